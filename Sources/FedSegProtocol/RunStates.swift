import GRDB

// The modes and states of runs and rounds: one typed enum each, the same raw values on the admin
// API's JSON, in the coordinator's database and on the command line. Decoding an unknown value
// fails with the field's allowed values, so a typo in a request says what would have worked.

/// A string-backed state with a fixed set of values, stored and sent as its raw value.
public protocol NamedState: RawRepresentable, CaseIterable, Codable, Sendable, Hashable, CustomStringConvertible,
    DatabaseValueConvertible where RawValue == String
{
    /// The field name used in messages about a wrong value.
    static var fieldName: String { get }
}

extension NamedState {
    public var description: String { rawValue }

    /// The allowed values, as a message lists them: "local or distributed".
    public static var allowedValues: String {
        let names = allCases.map(\.rawValue)
        guard names.count > 1 else { return names.first ?? "" }
        return names.dropLast().joined(separator: ", ") + " or " + names.last!
    }

    /// Parses a raw value, or throws a message naming the field and what it may be.
    public static func parse(_ text: String) throws -> Self {
        guard let value = Self(rawValue: text) else {
            throw ProtocolError.invalidField(fieldName, "must be \(allowedValues) (got \"\(text)\")")
        }
        return value
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(rawValue: text) else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath, debugDescription: "\(Self.fieldName) must be \(Self.allowedValues), not \"\(text)\""
            ))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var databaseValue: DatabaseValue { rawValue.databaseValue }

    public static func fromDatabaseValue(_ dbValue: DatabaseValue) -> Self? {
        String.fromDatabaseValue(dbValue).flatMap(Self.init(rawValue:))
    }
}

/// How a run's releases are noised.
public enum PrivacyMode: String, NamedState {
    /// Every client adds the full noise to its own update.
    case local
    /// Secure aggregation (SecAgg+): each client adds a share of the noise; the coordinator learns
    /// only the noised sum of enough clients.
    case distributed

    public static let fieldName = "privacy_mode"

    /// The same mode as the wire format's enum.
    public var wire: Fedseg_V1_PrivacyMode {
        switch self {
        case .local: .local
        case .distributed: .distributed
        }
    }
}

/// Where a run's start centroids come from. Neither touches client data.
public enum Initialization: String, NamedState {
    /// K-means on the embedded public seed phrases.
    case `public`
    /// Seeded random unit directions.
    case random

    public static let fieldName = "initialization"
}

/// A run's lifecycle: running until it completes, is stopped by the operator, or fails.
public enum RunStatus: String, NamedState {
    case running, completed, stopped, failed

    public static let fieldName = "status"
}

/// What a run is releasing now: the start histogram (when it has public seed phrases), DP
/// Lloyd rounds, the recommendation histogram (when it has a catalogue), then nothing.
public enum RunPhase: String, NamedState {
    case start, clustering, recommendation, done

    public static let fieldName = "phase"

    /// The wire format's phase of a round in this run phase (nil once done).
    public var wire: Fedseg_V1_Phase? {
        switch self {
        case .start: .start
        case .clustering: .clustering
        case .recommendation: .recommendation
        case .done: nil
        }
    }

    public init?(wire: Fedseg_V1_Phase) {
        switch wire {
        case .start: self = .start
        case .clustering: self = .clustering
        case .recommendation: self = .recommendation
        default: return nil
        }
    }
}

/// A round's lifecycle: collecting answers, then committed (released and charged) or abandoned.
public enum RoundStatus: String, NamedState {
    case collecting, committed, abandoned

    public static let fieldName = "status"
}

/// An enrolled client's standing.
public enum ClientStatus: String, NamedState {
    case active, revoked

    public static let fieldName = "status"
}

/// How a run's number of segments is set.
public enum SegmentCountSelection: String, NamedState {
    /// Exactly `k` (fewer only where a segment falls under `min_segment_share`).
    case fixed
    /// Chosen in 2...k from the first Lloyd round's released centroids and counts (run with k
    /// segments, then merged), released values only; costs no extra ε.
    case auto

    public static let fieldName = "k_selection"
}

/// What turns the start histogram into the run's first centroids.
public enum Clusterer: String, NamedState {
    /// Weighted K-means on the DP-weighted public candidates, then private Lloyd rounds.
    case kmeans
    /// DBSCAN on the DP-weighted public candidates (the dense regions become segments, at most
    /// k), then the same private Lloyd rounds. Chooses its own number of segments.
    case density

    public static let fieldName = "clusterer"
}
