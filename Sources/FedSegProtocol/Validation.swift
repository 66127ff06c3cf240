import Foundation
import SwiftProtobuf

/// The protocol version this build speaks.
public let fedsegProtocolVersion: UInt32 = 4

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
    public var maximumStartCandidates: UInt32 = 8192
    /// No honest statistic is this large: a sum of clipped vectors plus noise, or a count.
    public var maximumMagnitude: Double = 1e12

    public init() {}

    /// Whether every value is within `maximumMagnitude`: the same answer as checking each
    /// `abs(Double(value))`, from the smallest and largest alone (the conversion to Double never
    /// reverses an order), in a pass the compiler vectorises.
    public func withinMagnitude(_ values: [Int64]) -> Bool {
        guard var smallest = values.first else { return true }
        var largest = smallest
        for value in values {
            smallest = Swift.min(smallest, value)
            largest = Swift.max(largest, value)
        }
        return Double(largest) <= maximumMagnitude && -Double(smallest) <= maximumMagnitude
    }
}

/// Decoding with a size check first, then field validation in one place.
public enum MessageCodec {
    public static func decode<M: SwiftProtobuf.Message>(_ type: M.Type, from bytes: [UInt8], limits: ProtocolLimits = .init()) throws -> M {
        try decodeWithSwiftProtobuf(type, from: bytes, limits: limits)
    }

    static func decodeWithSwiftProtobuf<M: SwiftProtobuf.Message>(_ type: M.Type, from bytes: [UInt8], limits: ProtocolLimits) throws -> M {
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
        guard phase == .start || phase == .clustering || phase == .recommendation else { throw ProtocolError.invalidField("phase", "unknown phase") }
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
        guard !centered || phase == .clustering else { throw ProtocolError.invalidField("centered", "is for clustering rounds only") }
        guard !globalRow || phase == .recommendation else { throw ProtocolError.invalidField("global_row", "is for recommendation rounds only") }
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
        if phase == .start {
            guard (k...limits.maximumStartCandidates).contains(candidateCount) else {
                throw ProtocolError.invalidField("candidate_count", "must be in k...\(limits.maximumStartCandidates)")
            }
            guard candidates.count == Int(candidateCount) * Int(dimension) else {
                throw ProtocolError.invalidField("candidates", "has \(candidates.count) values, expected candidate_count x dimension = \(Int(candidateCount) * Int(dimension))")
            }
            guard candidates.allSatisfy(\.isFinite) else { throw ProtocolError.invalidField("candidates", "must be finite") }
        }
        if phase == .clustering && privacyMode == .local {
            for (name, value) in [("sum_scale", sumScale), ("count_scale", countScale), ("integer_sigma", integerSigma)] {
                guard value.isFinite, value > 0 else { throw ProtocolError.invalidField(name, "must be positive and finite in a local clustering round") }
            }
            guard sumScale <= 1_048_576 else { throw ProtocolError.invalidField("sum_scale", "must be at most 2^20") }
            guard countScale <= 1e12 else { throw ProtocolError.invalidField("count_scale", "must be at most 10^12") }
        }
        if privacyMode == .distributed {
            guard hasSecagg else { throw ProtocolError.invalidField("secagg", "a distributed round needs its secure-aggregation plan") }
            try secagg.validate(width: secAggWidth)
        }
    }

    /// Words in a distributed round's masked input: sums and counts, or the histogram.
    public var secAggWidth: Int {
        switch phase {
        case .start: Int(candidateCount)
        case .clustering: Int(k) * Int(dimension) + Int(k)
        default: histogramRows * Int(catalogSize)
        }
    }

    /// Rows of a recommendation round's histogram: k, and the global row when the plan has one.
    public var histogramRows: Int { Int(k) + (globalRow ? 1 : 0) }
}

extension Fedseg_V1_SecAggPlan {
    /// The rules the protocol's guarantees rest on; a client refuses a plan that breaks one.
    public func validate(width: Int) throws {
        let n = cohort.count
        guard n >= 2, n <= 1_000_000 else { throw ProtocolError.invalidField("secagg.cohort", "must hold 2 to 10^6 clients") }
        guard Set(cohort).count == n, cohort.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 64 }) else {
            throw ProtocolError.invalidField("secagg.cohort", "client ids must be distinct, 1 to 64 bytes")
        }
        guard degree >= 1, Int(degree) <= min(n - 1, 254) else { throw ProtocolError.invalidField("secagg.degree", "must be in 1...min(n - 1, 254)") }
        guard threshold >= 1, threshold <= degree else { throw ProtocolError.invalidField("secagg.threshold", "must be in 1...degree") }
        guard minSurvivors >= 2, Int(minSurvivors) <= n else { throw ProtocolError.invalidField("secagg.min_survivors", "must be in 2...cohort size") }
        // A client's seeds are rebuilt from t of its neighbours' shares; with t > degree/2 no two
        // disjoint groups of t neighbours exist, so no coordinator can collect both of a client's
        // secrets from neighbours that each reveal once.
        guard 2 * threshold > degree else { throw ProtocolError.invalidField("secagg.threshold", "must exceed degree / 2") }
        guard assumedColluders < minSurvivors else {
            throw ProtocolError.invalidField("secagg.assumed_colluders", "must leave at least one honest share among min_survivors")
        }
        guard Int(length) == width else { throw ProtocolError.invalidField("secagg.length", "is \(length), the round's statistics have \(width) words") }
        for (name, value) in [("secagg.sum_scale", sumScale), ("secagg.count_scale", countScale), ("secagg.stage_seconds", stageSeconds)] {
            guard value.isFinite, value > 0 else { throw ProtocolError.invalidField(name, "must be positive and finite") }
        }
        // Below σ = 4 per share the sum of discrete Gaussians is measurably not one (Kairouz et al. 2021).
        guard clientSigma.isFinite, clientSigma >= 4 else { throw ProtocolError.invalidField("secagg.client_sigma", "must be at least 4") }
    }
}

extension Fedseg_V1_SecAggAdvertise {
    public func validate(against plan: Fedseg_V1_RoundPlan) throws {
        guard runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: runID) }
        guard round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: round) }
        guard encryptionKey.count == 32, maskingKey.count == 32 else { throw ProtocolError.invalidField("keys", "must be 32 bytes each") }
        guard encryptionKey != maskingKey else { throw ProtocolError.invalidField("keys", "must differ") }
    }
}

extension Fedseg_V1_SecAggShares {
    /// `from`: the sender's index in the cohort; every share must come from it, go to one of its
    /// neighbours, once.
    public func validate(against plan: Fedseg_V1_RoundPlan, from sender: Int, neighbors: Set<Int>) throws {
        guard runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: runID) }
        guard round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: round) }
        guard !shares.isEmpty, shares.count <= neighbors.count else { throw ProtocolError.invalidField("shares", "must hold 1 to degree shares") }
        var seen = Set<UInt32>()
        for share in shares {
            guard Int(share.from) == sender else { throw ProtocolError.invalidField("shares.from", "must be the sender's own index") }
            guard neighbors.contains(Int(share.to)), seen.insert(share.to).inserted else {
                throw ProtocolError.invalidField("shares.to", "must be distinct neighbours of the sender")
            }
            guard share.envelope.count <= 1024 else { throw ProtocolError.invalidField("shares.envelope", "must be at most 1024 bytes") }
        }
    }
}

extension Fedseg_V1_SecAggMaskedInput {
    public func validate(against plan: Fedseg_V1_RoundPlan) throws {
        guard runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: runID) }
        guard round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: round) }
        guard words.count == Int(plan.secagg.length) else {
            throw ProtocolError.invalidField("words", "has \(words.count) words, expected \(plan.secagg.length)")
        }
    }
}

extension Fedseg_V1_SecAggUnmask {
    /// Reveals only about the sender's neighbours, one per neighbour.
    public func validate(against plan: Fedseg_V1_RoundPlan, neighbors: Set<Int>) throws {
        guard runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: runID) }
        guard round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: round) }
        guard reveals.count <= neighbors.count else { throw ProtocolError.invalidField("reveals", "more reveals than neighbours") }
        var seen = Set<UInt32>()
        for reveal in reveals {
            guard neighbors.contains(Int(reveal.about)), seen.insert(reveal.about).inserted else {
                throw ProtocolError.invalidField("reveals.about", "must be distinct neighbours of the sender")
            }
            guard reveal.kind == .selfMaskSeed || reveal.kind == .maskingKeySeed else { throw ProtocolError.invalidField("reveals.kind", "unknown") }
            guard (1...255).contains(reveal.x), reveal.share.count == 32 else { throw ProtocolError.invalidField("reveals.share", "must be x in 1...255 and 32 bytes") }
        }
    }
}

extension Fedseg_V1_ClientUpdate {
    /// Checks an update against the plan of the round it claims to answer.
    public func validate(against plan: Fedseg_V1_RoundPlan, limits: ProtocolLimits = .init()) throws {
        guard runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: runID) }
        guard round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: round) }
        guard plan.phase == .clustering else { throw ProtocolError.invalidField("phase", "the round is not a clustering round") }
        let width = Int(plan.k) * Int(plan.dimension) + Int(plan.k)
        guard words.count == width else {
            throw ProtocolError.invalidField("words", "has \(words.count) values, expected k x dimension + k = \(width)")
        }
        guard limits.withinMagnitude(words) else {
            throw ProtocolError.invalidField("words", "must be below \(limits.maximumMagnitude) in magnitude")
        }
    }
}

extension Fedseg_V1_RecommendationUpdate {
    public func validate(against plan: Fedseg_V1_RoundPlan, limits: ProtocolLimits = .init()) throws {
        guard runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: runID) }
        guard round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: round) }
        guard plan.phase == .recommendation else { throw ProtocolError.invalidField("phase", "the round is not a recommendation round") }
        guard counts.count == plan.histogramRows * Int(plan.catalogSize) else {
            throw ProtocolError.invalidField("counts", "has \(counts.count) values, expected \(plan.histogramRows * Int(plan.catalogSize))")
        }
        guard limits.withinMagnitude(counts) else {
            throw ProtocolError.invalidField("counts", "must be below \(limits.maximumMagnitude) in magnitude")
        }
    }
}

extension Fedseg_V1_StartHistogram {
    public func validate(against plan: Fedseg_V1_RoundPlan, limits: ProtocolLimits = .init()) throws {
        guard runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: runID) }
        guard round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: round) }
        guard plan.phase == .start else { throw ProtocolError.invalidField("phase", "the round is not a start round") }
        guard counts.count == Int(plan.candidateCount) else {
            throw ProtocolError.invalidField("counts", "has \(counts.count) values, expected candidate_count = \(plan.candidateCount)")
        }
        guard limits.withinMagnitude(counts) else {
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
