import ArgumentParser
import Foundation
import Logging
import Synchronization

/// How the daemons write their log lines: swift-log's text lines, or one JSON object per line for
/// log shippers (`--log-format json`).
public enum LogFormat: String, CaseIterable, ExpressibleByArgument, Sendable {
    case text, json
}

/// The process's log handler, set once at start (`coordinator serve`, `fedseg-node serve`).
public enum LogOutput {
    public static func bootstrap(format: LogFormat, level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler(label: label, write: JSONLogHandler.standardError)
                handler.logLevel = level
                return handler
            }
        }
    }
}

/// One JSON object per log line: `time` (ISO 8601, UTC, milliseconds), `level`, `label`,
/// `message`, `source`, and the metadata as string fields under `metadata`. Keys are sorted, so
/// the same event always prints the same way.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    let label: String
    let write: @Sendable (String) -> Void

    /// Lines to standard error, one write each, so that lines of concurrent tasks never interleave.
    public static let standardError: @Sendable (String) -> Void = { line in
        lock.withLock { _ in FileHandle.standardError.write(Data(line.utf8)) }
    }
    private static let lock = Mutex(())

    public init(label: String, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let own = event.metadata { merged.merge(own) { $1 } }
        write(Self.line(
            time: Date(), level: event.level, label: label, message: "\(event.message)", source: event.source, metadata: merged
        ))
    }

    /// The JSON line (with its newline) for one event.
    public static func line(time: Date, level: Logger.Level, label: String, message: String, source: String, metadata: Logger.Metadata) -> String {
        var object: [String: Any] = [
            "time": time.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)),
            "level": level.rawValue, "label": label, "message": message, "source": source,
        ]
        if !metadata.isEmpty { object["metadata"] = metadata.mapValues(Self.plain) }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]),
            let text = String(data: data, encoding: .utf8)
        else {
            return #"{"level":"error","message":"a log line could not be encoded as JSON"}"# + "\n"
        }
        return text + "\n"
    }

    static func plain(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): values.map(plain)
        case .dictionary(let values): values.mapValues(plain)
        }
    }
}
