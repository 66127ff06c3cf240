import Foundation
import SwiftProtobuf

/// The protocol version this build speaks.
public let fedsegProtocolVersion: UInt32 = 1

/// Why a decoded message was refused. One case per rule, so rejections can be counted by reason.
public enum ProtocolError: Error, Equatable, CustomStringConvertible {
    case oversized(size: Int, limit: Int)
    case undecodable(String)
    case unsupportedVersion(UInt32)
    case invalidField(String, String)
    case wrongRun(expected: String, found: String)
    case wrongRound(expected: UInt64, found: UInt64)

    public var description: String {
        switch self {
        case .oversized(let size, let limit): "message of \(size) bytes exceeds \(limit)"
        case .undecodable(let why): "message does not decode: \(why)"
        case .unsupportedVersion(let v): "protocol version \(v) is not supported (this build speaks \(fedsegProtocolVersion))"
        case .invalidField(let field, let why): "\(field): \(why)"
        case .wrongRun(let expected, let found): "update for run \(found), current run is \(expected)"
        case .wrongRound(let expected, let found): "update for round \(found), current round is \(expected)"
        }
    }

    /// The wire error code for this rejection.
    public var code: Fedseg_V1_ErrorResponse.Code {
        switch self {
        case .oversized: .oversized
        case .wrongRound: .wrongRound
        default: .invalidField
        }
    }
}

/// Limits a coordinator or client enforces on every message before trusting it.
public struct ProtocolLimits: Sendable, Equatable {
    public var maximumMessageBytes = 16 << 20
    public var maximumK: UInt32 = 1024
    public var maximumDimension: UInt32 = 4096
    public var maximumCatalogSize: UInt32 = 1_000_000
    /// No honest statistic is this large: a sum of clipped vectors plus noise, or a count.
    public var maximumMagnitude: Double = 1e12

    public init() {}
}

/// Decoding with a size check first, then field validation in one place.
public enum MessageCodec {
    public static func decode<M: SwiftProtobuf.Message>(_ type: M.Type, from bytes: [UInt8], limits: ProtocolLimits = .init()) throws -> M {
        guard bytes.count <= limits.maximumMessageBytes else {
            throw ProtocolError.oversized(size: bytes.count, limit: limits.maximumMessageBytes)
        }
        do {
            return try M(serializedBytes: bytes)
        } catch {
            throw ProtocolError.undecodable("\(error)")
        }
    }

    public static func encode(_ message: some SwiftProtobuf.Message) throws -> [UInt8] {
        try message.serializedBytes()
    }
}

extension Fedseg_V1_RoundPlan {
    /// Checks every field a client will act on.
    public func validate(limits: ProtocolLimits = .init()) throws {
        guard protocolVersion == fedsegProtocolVersion else { throw ProtocolError.unsupportedVersion(protocolVersion) }
        guard !runID.isEmpty, runID.utf8.count <= 128 else { throw ProtocolError.invalidField("run_id", "must be 1 to 128 bytes") }
        guard phase == .clustering || phase == .recommendation else { throw ProtocolError.invalidField("phase", "unknown phase") }
        guard privacyMode == .local || privacyMode == .distributed else { throw ProtocolError.invalidField("privacy_mode", "unknown mode") }
        guard (1...limits.maximumK).contains(k) else { throw ProtocolError.invalidField("k", "must be in 1...\(limits.maximumK)") }
        guard (1...limits.maximumDimension).contains(dimension) else {
            throw ProtocolError.invalidField("dimension", "must be in 1...\(limits.maximumDimension)")
        }
        guard centroids.count == Int(k) * Int(dimension) else {
            throw ProtocolError.invalidField("centroids", "has \(centroids.count) values, expected k x dimension = \(Int(k) * Int(dimension))")
        }
        guard centroids.allSatisfy(\.isFinite) else { throw ProtocolError.invalidField("centroids", "must be finite") }
        guard clipNorm.isFinite, clipNorm > 0 else { throw ProtocolError.invalidField("clip_norm", "must be positive and finite") }
        for (name, value) in [("noise_multiplier", noiseMultiplier), ("sum_std", sumStd), ("count_std", countStd)] {
            guard value.isFinite, value > 0 else { throw ProtocolError.invalidField(name, "must be positive and finite") }
        }
        guard samplingRate.isFinite, samplingRate > 0, samplingRate <= 1 else {
            throw ProtocolError.invalidField("sampling_rate", "must be in (0, 1]")
        }
        guard delta.isFinite, delta > 0, delta < 1 else { throw ProtocolError.invalidField("delta", "must be in (0, 1)") }
        guard minParticipants >= 1 else { throw ProtocolError.invalidField("min_participants", "must be at least 1") }
        if phase == .recommendation {
            guard (1...limits.maximumCatalogSize).contains(catalogSize) else {
                throw ProtocolError.invalidField("catalog_size", "must be in 1...\(limits.maximumCatalogSize)")
            }
            guard maxItemsPerUser >= 1 else { throw ProtocolError.invalidField("max_items_per_user", "must be at least 1") }
            guard catalogItems.count == Int(catalogSize) else {
                throw ProtocolError.invalidField("catalog_items", "has \(catalogItems.count) ids, expected \(catalogSize)")
            }
        }
    }
}

extension Fedseg_V1_ClientUpdate {
    /// Checks an update against the plan of the round it claims to answer.
    public func validate(against plan: Fedseg_V1_RoundPlan, limits: ProtocolLimits = .init()) throws {
        guard runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: runID) }
        guard round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: round) }
        guard plan.phase == .clustering else { throw ProtocolError.invalidField("phase", "the round is not a clustering round") }
        guard sums.count == Int(plan.k) * Int(plan.dimension) else {
            throw ProtocolError.invalidField("sums", "has \(sums.count) values, expected \(Int(plan.k) * Int(plan.dimension))")
        }
        guard counts.count == Int(plan.k) else { throw ProtocolError.invalidField("counts", "has \(counts.count) values, expected \(plan.k)") }
        for (name, values) in [("sums", sums), ("counts", counts)] {
            guard values.allSatisfy({ $0.isFinite && abs(Double($0)) <= limits.maximumMagnitude }) else {
                throw ProtocolError.invalidField(name, "must be finite and below \(limits.maximumMagnitude) in magnitude")
            }
        }
    }
}

extension Fedseg_V1_RecommendationUpdate {
    public func validate(against plan: Fedseg_V1_RoundPlan, limits: ProtocolLimits = .init()) throws {
        guard runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: runID) }
        guard round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: round) }
        guard plan.phase == .recommendation else { throw ProtocolError.invalidField("phase", "the round is not a recommendation round") }
        guard counts.count == Int(plan.k) * Int(plan.catalogSize) else {
            throw ProtocolError.invalidField("counts", "has \(counts.count) values, expected \(Int(plan.k) * Int(plan.catalogSize))")
        }
        guard counts.allSatisfy({ abs(Double($0)) <= limits.maximumMagnitude }) else {
            throw ProtocolError.invalidField("counts", "must be below \(limits.maximumMagnitude) in magnitude")
        }
    }
}

extension Fedseg_V1_Decline {
    public func validate(against plan: Fedseg_V1_RoundPlan) throws {
        guard runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: runID) }
        guard round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: round) }
        guard reason.utf8.count <= 256 else { throw ProtocolError.invalidField("reason", "must be at most 256 bytes") }
    }
}

extension Fedseg_V1_EnrollRequest {
    public func validate() throws {
        guard protocolVersion == fedsegProtocolVersion else { throw ProtocolError.unsupportedVersion(protocolVersion) }
        guard !token.isEmpty, token.utf8.count <= 256 else { throw ProtocolError.invalidField("token", "must be 1 to 256 bytes") }
        guard !clientID.isEmpty, clientID.utf8.count <= 64 else { throw ProtocolError.invalidField("client_id", "must be 1 to 64 bytes") }
        guard signingPublicKey.count == 32 else { throw ProtocolError.invalidField("signing_public_key", "must be 32 bytes") }
        guard kxPublicKey.count == 32 else { throw ProtocolError.invalidField("kx_public_key", "must be 32 bytes") }
    }
}
