// Generated from docs/openapi.json by `make openapi`: edit that file, then run it.

enum OpenAPIDocument {
    static let json = #"""
{
  "openapi": "3.1.0",
  "info": {
    "title": "FedSeg coordinator",
    "version": "1",
    "description": "The coordinator's HTTP API. docs/PROTOCOL.md is the normative description (envelopes, check order, formulas); this document lists every route, its parameters and its answers. Client endpoints carry protobuf (Protos/fedseg/v1), admin endpoints JSON with snake_case keys, the dashboard HTML."
  },
  "servers": [
    {
      "url": "http://127.0.0.1:7700"
    }
  ],
  "tags": [
    {
      "name": "client",
      "description": "What nodes call; protobuf bodies"
    },
    {
      "name": "admin",
      "description": "Operators and tools; JSON; Authorization: Bearer <admin token>"
    },
    {
      "name": "dashboard",
      "description": "The web dashboard"
    },
    {
      "name": "operations",
      "description": "Health, metrics, this document"
    }
  ],
  "paths": {
    "/healthz": {
      "get": {
        "summary": "Liveness of the process",
        "tags": [
          "operations"
        ],
        "responses": {
          "200": {
            "description": "ok",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/metrics": {
      "get": {
        "summary": "Prometheus text exposition (HELP and TYPE for every metric)",
        "tags": [
          "operations"
        ],
        "responses": {
          "200": {
            "description": "metrics",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/openapi.json": {
      "get": {
        "summary": "This document",
        "tags": [
          "operations"
        ],
        "responses": {
          "200": {
            "description": "OpenAPI 3.1",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object"
                }
              }
            }
          }
        }
      }
    },
    "/v1/enroll": {
      "post": {
        "summary": "Enrol a client with a one-time token",
        "tags": [
          "client"
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/x-protobuf": {
              "schema": {
                "type": "string",
                "format": "binary",
                "description": "fedseg.v1.EnrollRequest"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "enrolled: the coordinator's keys to pin",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.EnrollResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "400": {
            "description": "BAD_REQUEST: the id is already enrolled",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "403": {
            "description": "BAD_TOKEN",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "422": {
            "description": "INVALID_FIELD",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          }
        }
      }
    },
    "/v1/rounds/current": {
      "get": {
        "summary": "The open round's signed plan",
        "tags": [
          "client"
        ],
        "parameters": [
          {
            "name": "client",
            "in": "query",
            "required": false,
            "schema": {
              "type": "string"
            },
            "description": "the client's id: marks it live (docs/PROTOCOL.md, Liveness)"
          }
        ],
        "responses": {
          "200": {
            "description": "SignedPublication of kind ROUND_PLAN",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.SignedPublication (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "404": {
            "description": "NO_OPEN_ROUND",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          }
        }
      }
    },
    "/v1/rounds/{round}/updates": {
      "post": {
        "summary": "Send one sealed message for a round",
        "tags": [
          "client"
        ],
        "parameters": [
          {
            "name": "round",
            "in": "path",
            "required": true,
            "schema": {
              "type": "integer"
            }
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/x-protobuf": {
              "schema": {
                "type": "string",
                "format": "binary",
                "description": "the envelope (docs/PROTOCOL.md, Client → coordinator envelope)"
              }
            }
          }
        },
        "responses": {
          "202": {
            "description": "recorded: the message counts in the round"
          },
          "400": {
            "description": "BAD_REQUEST, TAMPERED or WRONG_KIND",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "403": {
            "description": "UNKNOWN_SENDER or REVOKED",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "409": {
            "description": "WRONG_ROUND, REPLAY, ALREADY_ANSWERED, LATE or STAGE_NOT_OPEN",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "413": {
            "description": "OVERSIZED",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "422": {
            "description": "INVALID_FIELD",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "500": {
            "description": "UNSPECIFIED: send it again later",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "503": {
            "description": "UNAVAILABLE: send it again later",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          }
        }
      }
    },
    "/v1/rounds/{round}/secagg": {
      "get": {
        "summary": "The signed secure-aggregation stage view",
        "tags": [
          "client"
        ],
        "parameters": [
          {
            "name": "round",
            "in": "path",
            "required": true,
            "schema": {
              "type": "integer"
            }
          },
          {
            "name": "client",
            "in": "query",
            "required": false,
            "schema": {
              "type": "string"
            },
            "description": "the client's id: marks it live (docs/PROTOCOL.md, Liveness)"
          }
        ],
        "responses": {
          "200": {
            "description": "SignedPublication of kind SECAGG_STAGE",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.SignedPublication (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "400": {
            "description": "BAD_REQUEST: round is not a number",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "404": {
            "description": "NOT_FOUND: not open, a local round, or the client is not in its cohort",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          }
        }
      }
    },
    "/v1/models/latest": {
      "get": {
        "summary": "The latest signed segment model",
        "tags": [
          "client"
        ],
        "responses": {
          "200": {
            "description": "SignedPublication of kind SEGMENT_MODEL",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.SignedPublication (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          },
          "404": {
            "description": "NOT_FOUND: none published yet",
            "content": {
              "application/x-protobuf": {
                "schema": {
                  "type": "string",
                  "format": "binary",
                  "description": "protobuf message fedseg.v1.ErrorResponse (Protos/fedseg/v1/*.proto)"
                }
              }
            }
          }
        }
      }
    },
    "/admin/v1/status": {
      "get": {
        "summary": "Clients and the current run",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "200": {
            "description": "status",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminStatus"
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "tags": [
          "admin"
        ]
      }
    },
    "/admin/v1/clients": {
      "get": {
        "summary": "Every enrolled client",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "200": {
            "description": "clients",
            "content": {
              "application/json": {
                "schema": {
                  "type": "array",
                  "items": {
                    "$ref": "#/components/schemas/ClientEntry"
                  }
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "tags": [
          "admin"
        ]
      }
    },
    "/admin/v1/clients/tokens": {
      "post": {
        "summary": "One-time enrolment tokens",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "200": {
            "description": "tokens",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Tokens"
                }
              }
            }
          },
          "400": {
            "description": "malformed_json",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "413": {
            "description": "too_large",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "422": {
            "description": "invalid_field",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/TokenRequest"
              }
            }
          }
        },
        "tags": [
          "admin"
        ]
      }
    },
    "/admin/v1/clients/{id}/revoke": {
      "post": {
        "summary": "Revoke a client",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "200": {
            "description": "revoked",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Revoked"
                }
              }
            }
          },
          "404": {
            "description": "no such client",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          }
        ],
        "tags": [
          "admin"
        ]
      }
    },
    "/admin/v1/runs": {
      "get": {
        "summary": "Every run",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "200": {
            "description": "runs",
            "content": {
              "application/json": {
                "schema": {
                  "type": "array",
                  "items": {
                    "$ref": "#/components/schemas/RunListEntry"
                  }
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "tags": [
          "admin"
        ]
      },
      "post": {
        "summary": "Start a run",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "201": {
            "description": "started",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/RunSummary"
                }
              }
            }
          },
          "400": {
            "description": "malformed_json",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "409": {
            "description": "a run is in progress",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "413": {
            "description": "too_large",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "422": {
            "description": "invalid_field or budget",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/RunParameters"
              }
            }
          }
        },
        "tags": [
          "admin"
        ]
      }
    },
    "/admin/v1/runs/current": {
      "get": {
        "summary": "The current (or last) run",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "200": {
            "description": "summary",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/RunSummary"
                }
              }
            }
          },
          "404": {
            "description": "no run",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "tags": [
          "admin"
        ]
      }
    },
    "/admin/v1/runs/{id}": {
      "get": {
        "summary": "One run",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "200": {
            "description": "summary",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/RunSummary"
                }
              }
            }
          },
          "404": {
            "description": "no such run",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          }
        ],
        "tags": [
          "admin"
        ]
      }
    },
    "/admin/v1/runs/current/stop": {
      "post": {
        "summary": "Stop the run in progress",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "200": {
            "description": "stopped",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/RunSummary"
                }
              }
            }
          },
          "409": {
            "description": "no run in progress",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "tags": [
          "admin"
        ]
      }
    },
    "/admin/v1/segments": {
      "get": {
        "summary": "The current (or last) run's segments",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "200": {
            "description": "segments",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/SegmentsReport"
                }
              }
            }
          },
          "404": {
            "description": "no run",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "tags": [
          "admin"
        ]
      }
    },
    "/admin/v1/ledger": {
      "get": {
        "summary": "The privacy ledger's audit",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "200": {
            "description": "audit",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/LedgerAudit"
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "tags": [
          "admin"
        ]
      }
    },
    "/admin/v1/privacy/budget": {
      "post": {
        "summary": "Set the lifetime budget of all-users",
        "security": [
          {
            "adminToken": []
          }
        ],
        "responses": {
          "200": {
            "description": "the budget in force",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/BudgetRequest"
                }
              }
            }
          },
          "400": {
            "description": "malformed_json",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "409": {
            "description": "a run is in progress",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "413": {
            "description": "too_large",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "422": {
            "description": "invalid_field or budget",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "401": {
            "description": "no bearer token, or the wrong one",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "500": {
            "description": "internal error (the log has the cause)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          },
          "503": {
            "description": "the coordinator cannot store it now, or its state is damaged",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AdminError"
                }
              }
            }
          }
        },
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/BudgetRequest"
              }
            }
          }
        },
        "tags": [
          "admin"
        ]
      }
    },
    "/dashboard/login": {
      "get": {
        "summary": "The sign-in form (a signed-in browser is sent on to /dashboard)",
        "tags": [
          "dashboard"
        ],
        "responses": {
          "200": {
            "description": "the form",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "303": {
            "description": "already signed in",
            "headers": {
              "Location": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      },
      "post": {
        "summary": "Sign in with the admin token; sets the session cookie",
        "tags": [
          "dashboard"
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/x-www-form-urlencoded": {
              "schema": {
                "type": "object",
                "properties": {
                  "token": {
                    "type": "string"
                  }
                },
                "additionalProperties": false,
                "required": [
                  "token"
                ]
              }
            }
          }
        },
        "responses": {
          "303": {
            "description": "signed in: to /dashboard",
            "headers": {
              "Location": {
                "schema": {
                  "type": "string"
                }
              },
              "Set-Cookie": {
                "schema": {
                  "type": "string"
                },
                "description": "fedseg_session=…; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age=43200 (Secure under TLS)"
              }
            }
          },
          "401": {
            "description": "wrong admin token",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "403": {
            "description": "the form came from another site",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/dashboard": {
      "get": {
        "summary": "Runs: the current run live, and every run",
        "security": [
          {
            "dashboardSession": []
          },
          {
            "adminToken": []
          }
        ],
        "tags": [
          "dashboard"
        ],
        "responses": {
          "200": {
            "description": "the page",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "303": {
            "description": "no session: to /dashboard/login",
            "headers": {
              "Location": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "401": {
            "description": "a wrong bearer token",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/dashboard/live/run": {
      "get": {
        "summary": "The live run section (HTML fragment), refreshed by the page every 2 s",
        "security": [
          {
            "dashboardSession": []
          },
          {
            "adminToken": []
          }
        ],
        "tags": [
          "dashboard"
        ],
        "responses": {
          "200": {
            "description": "the page",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "303": {
            "description": "no session: to /dashboard/login",
            "headers": {
              "Location": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "401": {
            "description": "a wrong bearer token",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/dashboard/privacy": {
      "get": {
        "summary": "Privacy: ε per population, the ledger's verification, the ε chart",
        "security": [
          {
            "dashboardSession": []
          },
          {
            "adminToken": []
          }
        ],
        "tags": [
          "dashboard"
        ],
        "responses": {
          "200": {
            "description": "the page",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "303": {
            "description": "no session: to /dashboard/login",
            "headers": {
              "Location": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "401": {
            "description": "a wrong bearer token",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/dashboard/segments": {
      "get": {
        "summary": "Segments: noisy sizes, labels, top items, nearest phrases",
        "security": [
          {
            "dashboardSession": []
          },
          {
            "adminToken": []
          }
        ],
        "tags": [
          "dashboard"
        ],
        "responses": {
          "200": {
            "description": "the page",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "303": {
            "description": "no session: to /dashboard/login",
            "headers": {
              "Location": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "401": {
            "description": "a wrong bearer token",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/dashboard/clients": {
      "get": {
        "summary": "Clients, and rejected updates by reason",
        "security": [
          {
            "dashboardSession": []
          },
          {
            "adminToken": []
          }
        ],
        "tags": [
          "dashboard"
        ],
        "responses": {
          "200": {
            "description": "the page",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "303": {
            "description": "no session: to /dashboard/login",
            "headers": {
              "Location": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "401": {
            "description": "a wrong bearer token",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/dashboard/runs/stop": {
      "post": {
        "summary": "Stop the run in progress",
        "security": [
          {
            "dashboardSession": []
          },
          {
            "adminToken": []
          }
        ],
        "tags": [
          "dashboard"
        ],
        "responses": {
          "303": {
            "description": "done: back to the page",
            "headers": {
              "Location": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "401": {
            "description": "no session",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "403": {
            "description": "the CSRF token is missing or wrong, or the Origin is another site",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        },
        "requestBody": {
          "required": true,
          "content": {
            "application/x-www-form-urlencoded": {
              "schema": {
                "type": "object",
                "properties": {
                  "csrf": {
                    "type": "string"
                  }
                },
                "additionalProperties": false,
                "required": [
                  "csrf"
                ]
              }
            }
          }
        }
      }
    },
    "/dashboard/logout": {
      "post": {
        "summary": "Sign out (ends the session on the server)",
        "security": [
          {
            "dashboardSession": []
          },
          {
            "adminToken": []
          }
        ],
        "tags": [
          "dashboard"
        ],
        "responses": {
          "303": {
            "description": "to /dashboard/login",
            "headers": {
              "Location": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "401": {
            "description": "no session",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "403": {
            "description": "the CSRF token is missing or wrong, or the Origin is another site",
            "content": {
              "text/html": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        },
        "requestBody": {
          "required": true,
          "content": {
            "application/x-www-form-urlencoded": {
              "schema": {
                "type": "object",
                "properties": {
                  "csrf": {
                    "type": "string"
                  }
                },
                "additionalProperties": false,
                "required": [
                  "csrf"
                ]
              }
            }
          }
        }
      }
    },
    "/dashboard/static/style.css": {
      "get": {
        "summary": "The dashboard's stylesheet",
        "tags": [
          "dashboard"
        ],
        "responses": {
          "200": {
            "description": "CSS",
            "content": {
              "text/css": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/dashboard/static/live.js": {
      "get": {
        "summary": "The dashboard's refresh script",
        "tags": [
          "dashboard"
        ],
        "responses": {
          "200": {
            "description": "JavaScript",
            "content": {
              "text/javascript": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    }
  },
  "components": {
    "schemas": {
      "AdminError": {
        "type": "object",
        "properties": {
          "error": {
            "type": "object",
            "properties": {
              "code": {
                "type": "string",
                "enum": [
                  "malformed_json",
                  "invalid_field",
                  "bad_request",
                  "unauthorized",
                  "not_found",
                  "conflict",
                  "budget",
                  "too_large",
                  "unavailable",
                  "internal"
                ]
              },
              "message": {
                "type": "string"
              },
              "field": {
                "type": "string"
              }
            },
            "additionalProperties": false,
            "required": [
              "code",
              "message"
            ]
          }
        },
        "additionalProperties": false,
        "required": [
          "error"
        ],
        "description": "Every admin error (docs/PROTOCOL.md, \"Admin errors\")."
      },
      "RunParameters": {
        "type": "object",
        "properties": {
          "k": {
            "type": "integer"
          },
          "epsilon": {
            "type": "number"
          },
          "delta": {
            "type": "number"
          },
          "embedder_id": {
            "type": "string"
          },
          "dimension": {
            "type": "integer"
          },
          "rounds": {
            "type": "integer"
          },
          "clustering_share": {
            "type": "number"
          },
          "clip_norm": {
            "type": "number"
          },
          "centered_clipping": {
            "type": "boolean"
          },
          "global_row": {
            "type": "boolean",
            "description": "The recommendation histogram carries a global row besides the segments' (each user's sampled items counted in both, sensitivity sqrt(2m)); new users' list is ranked from the combined estimate. Default true."
          },
          "privacy_mode": {
            "type": "string",
            "enum": [
              "local",
              "distributed"
            ]
          },
          "max_users": {
            "type": "integer"
          },
          "assumed_colluders": {
            "type": "integer"
          },
          "min_participants": {
            "type": "integer"
          },
          "round_deadline_seconds": {
            "type": "number"
          },
          "sampling_rate": {
            "type": "number"
          },
          "convergence_tolerance": {
            "type": "number"
          },
          "initialization": {
            "type": "string",
            "enum": [
              "public",
              "random"
            ]
          },
          "seed_phrases": {
            "type": "array",
            "items": {
              "type": "string"
            }
          },
          "start_histogram_share": {
            "type": "number"
          },
          "seed": {
            "type": "integer"
          },
          "catalog": {
            "type": "array",
            "items": {
              "type": "string"
            }
          },
          "max_items_per_user": {
            "type": "integer"
          },
          "max_abandoned_rounds": {
            "type": "integer"
          },
          "k_selection": {
            "type": "string",
            "enum": [
              "fixed",
              "auto"
            ]
          },
          "clusterer": {
            "type": "string",
            "enum": [
              "kmeans",
              "density"
            ]
          },
          "min_segment_share": {
            "type": "number"
          }
        },
        "additionalProperties": false,
        "required": [
          "k",
          "epsilon",
          "delta"
        ],
        "description": "A run's parameters; every rule is in docs/PROTOCOL.md (RunParameters.validate)."
      },
      "OpenRoundSummary": {
        "type": "object",
        "properties": {
          "id": {
            "type": "integer"
          },
          "phase": {
            "type": "string",
            "enum": [
              "start",
              "clustering",
              "recommendation",
              "done"
            ]
          },
          "participants": {
            "type": "integer"
          },
          "declined": {
            "type": "integer"
          },
          "expected": {
            "type": "integer"
          },
          "deadline_unix": {
            "type": "number"
          },
          "secagg_stage": {
            "type": "string"
          },
          "secagg_progress": {
            "type": "object",
            "additionalProperties": {
              "type": "integer"
            }
          }
        },
        "additionalProperties": false,
        "required": [
          "id",
          "phase",
          "participants",
          "declined",
          "expected",
          "deadline_unix"
        ]
      },
      "RoundSummary": {
        "type": "object",
        "properties": {
          "id": {
            "type": "integer"
          },
          "phase": {
            "type": "string",
            "enum": [
              "start",
              "clustering",
              "recommendation",
              "done"
            ]
          },
          "status": {
            "type": "string",
            "enum": [
              "collecting",
              "committed",
              "abandoned"
            ]
          },
          "participants": {
            "type": "integer"
          },
          "declined": {
            "type": "integer"
          },
          "expected": {
            "type": "integer"
          },
          "centroid_shift": {
            "type": "number"
          },
          "clip_norm": {
            "type": "number"
          },
          "centered": {
            "type": "boolean"
          }
        },
        "additionalProperties": false,
        "required": [
          "id",
          "phase",
          "status",
          "participants",
          "declined",
          "expected"
        ]
      },
      "SegmentationRecord": {
        "type": "object",
        "properties": {
          "requested_k": {
            "type": "integer"
          },
          "selection": {
            "type": "string",
            "enum": [
              "fixed",
              "auto"
            ]
          },
          "clusterer": {
            "type": "string",
            "enum": [
              "kmeans",
              "density"
            ]
          },
          "chosen_k": {
            "type": "integer"
          },
          "current_k": {
            "type": "integer"
          },
          "reason": {
            "type": "string"
          },
          "scores": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {
                "k": {
                  "type": "integer"
                },
                "silhouette": {
                  "type": [
                    "number",
                    "null"
                  ]
                }
              },
              "additionalProperties": false,
              "required": [
                "k",
                "silhouette"
              ]
            }
          },
          "dropped": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {
                "round": {
                  "type": "integer"
                },
                "segment": {
                  "type": "integer"
                },
                "share": {
                  "type": "number"
                }
              },
              "additionalProperties": false,
              "required": [
                "round",
                "segment",
                "share"
              ]
            }
          }
        },
        "additionalProperties": false,
        "required": [
          "requested_k",
          "selection",
          "clusterer",
          "chosen_k",
          "current_k",
          "reason",
          "scores",
          "dropped"
        ]
      },
      "RunSummary": {
        "type": "object",
        "properties": {
          "id": {
            "type": "string"
          },
          "status": {
            "type": "string",
            "enum": [
              "running",
              "completed",
              "stopped",
              "failed"
            ]
          },
          "reason": {
            "type": "string"
          },
          "phase": {
            "type": "string",
            "enum": [
              "start",
              "clustering",
              "recommendation",
              "done"
            ]
          },
          "k": {
            "type": "integer"
          },
          "dimension": {
            "type": "integer"
          },
          "embedder_id": {
            "type": "string"
          },
          "privacy_mode": {
            "type": "string",
            "enum": [
              "local",
              "distributed"
            ]
          },
          "epsilon": {
            "type": "number"
          },
          "delta": {
            "type": "number"
          },
          "epsilon_spent": {
            "type": "number"
          },
          "planned_rounds": {
            "type": "integer"
          },
          "committed_rounds": {
            "type": "integer"
          },
          "noise_multiplier": {
            "type": "number"
          },
          "open_round": {
            "$ref": "#/components/schemas/OpenRoundSummary"
          },
          "rounds": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/RoundSummary"
            }
          },
          "stale_clients": {
            "type": "array",
            "items": {
              "type": "string"
            }
          },
          "segmentation": {
            "$ref": "#/components/schemas/SegmentationRecord"
          }
        },
        "additionalProperties": false,
        "required": [
          "id",
          "status",
          "phase",
          "k",
          "dimension",
          "embedder_id",
          "privacy_mode",
          "epsilon",
          "delta",
          "epsilon_spent",
          "planned_rounds",
          "committed_rounds",
          "noise_multiplier",
          "rounds"
        ]
      },
      "RunListEntry": {
        "type": "object",
        "properties": {
          "id": {
            "type": "string"
          },
          "status": {
            "type": "string",
            "enum": [
              "running",
              "completed",
              "stopped",
              "failed"
            ]
          },
          "phase": {
            "type": "string",
            "enum": [
              "start",
              "clustering",
              "recommendation",
              "done"
            ]
          },
          "committed_rounds": {
            "type": "string",
            "description": "a decimal number, as text"
          }
        },
        "additionalProperties": false,
        "required": [
          "id",
          "status",
          "phase",
          "committed_rounds"
        ]
      },
      "AdminStatus": {
        "type": "object",
        "properties": {
          "clients": {
            "type": "integer"
          },
          "active_clients": {
            "type": "integer"
          },
          "live_clients": {
            "type": "integer"
          },
          "run": {
            "$ref": "#/components/schemas/RunSummary"
          },
          "coordinator_signing_key": {
            "type": "string"
          }
        },
        "additionalProperties": false,
        "required": [
          "clients",
          "active_clients",
          "live_clients",
          "coordinator_signing_key"
        ]
      },
      "ClientEntry": {
        "type": "object",
        "properties": {
          "id": {
            "type": "string"
          },
          "status": {
            "type": "string",
            "enum": [
              "active",
              "revoked"
            ]
          },
          "enrolled_at": {
            "type": "number"
          },
          "last_seen_at": {
            "type": "number"
          },
          "stale": {
            "type": "boolean"
          }
        },
        "additionalProperties": false,
        "required": [
          "id",
          "status",
          "enrolled_at",
          "last_seen_at",
          "stale"
        ]
      },
      "TokenRequest": {
        "type": "object",
        "properties": {
          "count": {
            "type": "integer"
          },
          "lifetime_seconds": {
            "type": "number"
          }
        },
        "additionalProperties": false
      },
      "Tokens": {
        "type": "object",
        "properties": {
          "tokens": {
            "type": "array",
            "items": {
              "type": "string"
            }
          }
        },
        "additionalProperties": false,
        "required": [
          "tokens"
        ]
      },
      "Revoked": {
        "type": "object",
        "properties": {
          "revoked": {
            "type": "string"
          }
        },
        "additionalProperties": false,
        "required": [
          "revoked"
        ]
      },
      "Segment": {
        "type": "object",
        "properties": {
          "id": {
            "type": "integer"
          },
          "norm": {
            "type": "number"
          },
          "released_count": {
            "type": "number"
          },
          "size": {
            "type": "integer"
          },
          "spread": {
            "type": "number"
          },
          "nearest_seed_phrases": {
            "type": "array",
            "items": {
              "type": "string"
            }
          },
          "label": {
            "type": "string"
          },
          "top_items": {
            "type": "array",
            "items": {
              "type": "string"
            }
          }
        },
        "additionalProperties": false,
        "required": [
          "id",
          "norm",
          "spread",
          "nearest_seed_phrases",
          "label",
          "top_items"
        ]
      },
      "SegmentsReport": {
        "type": "object",
        "properties": {
          "run_id": {
            "type": "string"
          },
          "status": {
            "type": "string",
            "enum": [
              "running",
              "completed",
              "stopped",
              "failed"
            ]
          },
          "k": {
            "type": "integer"
          },
          "dimension": {
            "type": "integer"
          },
          "shift_history": {
            "type": "array",
            "items": {
              "type": "number"
            }
          },
          "segments": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Segment"
            }
          }
        },
        "additionalProperties": false,
        "required": [
          "run_id",
          "status",
          "k",
          "dimension",
          "shift_history",
          "segments"
        ]
      },
      "LedgerAudit": {
        "type": "object",
        "properties": {
          "records": {
            "type": "integer"
          },
          "verified": {
            "type": "boolean"
          },
          "problems": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {
                "sequence": {
                  "type": "integer"
                },
                "reason": {
                  "type": "string"
                }
              },
              "additionalProperties": false,
              "required": [
                "reason"
              ]
            }
          },
          "populations": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {
                "population": {
                  "type": "string"
                },
                "releases": {
                  "type": "integer"
                },
                "epsilon_spent": {
                  "type": "number"
                },
                "epsilon_budget": {
                  "type": "number"
                },
                "epsilon_left": {
                  "type": "number"
                },
                "delta": {
                  "type": "number"
                },
                "series": {
                  "type": "array",
                  "items": {
                    "type": "object",
                    "properties": {
                      "sequence": {
                        "type": "integer"
                      },
                      "round": {
                        "type": "integer"
                      },
                      "release_id": {
                        "type": "string"
                      },
                      "mode": {
                        "type": "string"
                      },
                      "epsilon": {
                        "type": "number"
                      }
                    },
                    "additionalProperties": false,
                    "required": [
                      "sequence",
                      "round",
                      "release_id",
                      "mode",
                      "epsilon"
                    ]
                  }
                }
              },
              "additionalProperties": false,
              "required": [
                "population",
                "releases",
                "epsilon_spent",
                "series"
              ]
            }
          },
          "budget_changes": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {
                "sequence": {
                  "type": "integer"
                },
                "population": {
                  "type": "string"
                },
                "epsilon": {
                  "type": "number"
                },
                "delta": {
                  "type": "number"
                },
                "reason": {
                  "type": "string"
                },
                "created_at": {
                  "type": "string"
                },
                "previous_hash": {
                  "type": "string"
                },
                "hash": {
                  "type": "string"
                }
              },
              "additionalProperties": false,
              "required": [
                "sequence",
                "population",
                "epsilon",
                "delta",
                "reason",
                "created_at",
                "previous_hash",
                "hash"
              ]
            }
          }
        },
        "additionalProperties": false,
        "required": [
          "records",
          "verified",
          "problems",
          "populations",
          "budget_changes"
        ]
      },
      "BudgetRequest": {
        "type": "object",
        "properties": {
          "epsilon": {
            "type": "number"
          },
          "delta": {
            "type": "number"
          },
          "reason": {
            "type": "string"
          }
        },
        "additionalProperties": false,
        "required": [
          "epsilon",
          "reason"
        ]
      }
    },
    "securitySchemes": {
      "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin token from admin.token in the coordinator's state directory"
      },
      "dashboardSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "fedseg_session",
        "description": "Set by POST /dashboard/login"
      }
    }
  }
}

"""#
}
