import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// `coordinator serve --response-log FILE`: one JSON line per answer the coordinator gives —
/// method, route pattern, status, media type, body size, and the body itself when it is JSON —
/// for whoever implements a client from docs/PROTOCOL.md and wants to see what it was answered,
/// and for the integration tests, which check every recorded answer against docs/openapi.json.
/// Request bodies are never written (they hold encrypted updates). Admin answers are (enrollment
/// tokens among them), so the file is created owner-only, and is as sensitive as `admin.token`.
public final class ResponseLog: Sendable {
    /// One line (FedSegTestSupport's `RecordedResponses` reads them back).
    public struct Entry: Encodable, Sendable, Equatable {
        public var method: String
        /// The matched route's pattern (`/admin/v1/runs/{id}`), or `unmatched`.
        public var route: String
        public var status: Int
        public var contentType: String?
        public var bytes: Int
        /// The body as text, when the media type is JSON.
        public var body: String?

        enum CodingKeys: String, CodingKey {
            case method, route, status, bytes, body
            case contentType = "content_type"
        }
    }

    private struct Output {
        let file: FileHandle
        let encoder: JSONEncoder
    }

    private let output: Mutex<Output>
    public let path: String

    /// Opens (creating, mode 0600) `path` for appending.
    public init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw CoordinatorError.configuration("cannot open the response log \(path): \(String(cString: strerror(errno))); give a writable file")
        }
        self.path = path
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        output = Mutex(Output(file: FileHandle(fileDescriptor: fd, closeOnDealloc: true), encoder: encoder))
    }

    func append(_ entry: Entry) {
        output.withLock { output in
            guard var line = try? output.encoder.encode(entry) else { return }
            line.append(0x0A)
            // One write(2) per line on an O_APPEND descriptor: lines never interleave.
            try? output.file.write(contentsOf: line)
        }
    }
}

/// Records each answer in a `ResponseLog`. Errors thrown by handlers become their responses
/// here (as the server would make them), so that error answers are recorded too.
struct ResponseRecorder<Context: RequestContext>: RouterMiddleware {
    let log: ResponseLog

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        let route = context.endpointPath.flatMap { $0 == "NotFound" ? nil : $0 } ?? "unmatched"
        let contentType = response.headers[.contentType]
        let isJSON = contentType?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) == "application/json" } ?? false
        let template = ResponseLog.Entry(method: request.method.rawValue, route: route, status: Int(response.status.code), contentType: contentType, bytes: 0)
        let log = self.log
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            let recording = RecordingWriter(base: writer, keepBytes: isJSON) { bytes, count in
                var entry = template
                entry.bytes = count
                entry.body = bytes.map { String(decoding: $0, as: UTF8.self) }
                log.append(entry)
            }
            try await body.write(recording)
        }
        return response
    }
}

/// Passes every buffer on, counting it (and keeping it, for JSON), and reports at `finish`.
struct RecordingWriter: ResponseBodyWriter {
    var base: any ResponseBodyWriter
    let keepBytes: Bool
    let done: @Sendable ([UInt8]?, Int) -> Void
    var kept: [UInt8] = []
    var count = 0

    mutating func write(_ buffer: ByteBuffer) async throws {
        count += buffer.readableBytes
        if keepBytes { kept.append(contentsOf: buffer.readableBytesView) }
        try await base.write(buffer)
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        try await base.finish(trailingHeaders)
        done(keepBytes ? kept : nil, count)
    }
}
