import FedSegClustering
import FedSegMath
import FedSegProtocol
import FedSegRecommend
import FedSegSecureAggregation

/// The one seam between the two ways a round's release is noised: local noise (every client
/// noises its own update; the coordinator sums them) and secure aggregation with distributed
/// noise (the coordinator learns only the noised sum of the survivors). The coordinator's state
/// machine talks to this alone; nothing else in it asks which mode a round is in.
protocol RoundAggregation {
    /// Updates that count (distributed: masked inputs summed).
    var participants: Int { get }
    var declined: Int { get }
    /// The message kinds the round takes now.
    var kinds: [Fedseg_V1_MessageKind] { get }
    /// Every kind the round may have accepted (to decode its messages after a restart).
    var allKinds: [Fedseg_V1_MessageKind] { get }
    /// Checks a decoded message needs beyond the plan, run by the intake before recording it.
    var check: UpdateIntake.Check? { get }
    /// Where a message kind stands relative to what the round takes now.
    var stageOrder: (@Sendable (Fedseg_V1_MessageKind) -> Coordinator.StageOrder)? { get }

    /// Whether the round takes this message from this client now.
    func expects(_ message: UpdateIntake.Message, from clientID: String) -> Bool
    /// Whether accepting the message shows the coordinator private data (then the round is
    /// charged with it).
    func revealsOnAccept(_ message: UpdateIntake.Message) -> Bool
    mutating func add(_ message: UpdateIntake.Message, from clientID: String) throws
    /// After a restart: the stage recorded when the process stopped.
    mutating func resume(from persisted: SecAggRound.Persisted?) throws
    /// After a restart: a message accepted before it, in the order accepted.
    mutating func replay(_ message: UpdateIntake.Message, from clientID: String) throws
    mutating func advance(now: Double, deadline: Double, expected: Int) -> AggregationStep
    /// The released aggregate, decoded; only called once the round is charged.
    func result() -> AggregateResult
}

enum AggregationStep {
    case open
    case nextStage(SecAggRound.Persisted)
    case aborted(String)
    /// Every answer is in, or the deadline passed: the round can be charged and closed.
    case ready
}

/// A round's released aggregate and the variance of its noise per coordinate.
struct AggregateResult {
    var sums: [Double]
    var counts: [Double]
    var sumVariance: Double
    var countVariance: Double
}

/// Local noise: the sum of the clients' already-noised updates, whose noise variance is the
/// plan's per-client variance times the number of updates.
struct LocalAggregation: RoundAggregation {
    let plan: Fedseg_V1_RoundPlan
    var sums: [Double]
    var counts: [Double]
    /// Local clustering rounds: the exact sum of the clients' integer words.
    var words: [Int64]
    var participants = 0
    var declined = 0

    init(plan: Fedseg_V1_RoundPlan) {
        self.plan = plan
        let k = Int(plan.k)
        let width = switch plan.phase {
        case .start: Int(plan.candidateCount)
        case .clustering: k * Int(plan.dimension)
        default: plan.histogramRows * Int(plan.catalogSize)
        }
        sums = [Double](repeating: 0, count: width)
        counts = [Double](repeating: 0, count: k)
        words = plan.phase == .clustering ? [Int64](repeating: 0, count: width + k) : []
    }

    var kinds: [Fedseg_V1_MessageKind] { UpdateIntake.acceptedKinds(for: plan.phase) }
    var allKinds: [Fedseg_V1_MessageKind] { kinds }
    var check: UpdateIntake.Check? { nil }
    var stageOrder: (@Sendable (Fedseg_V1_MessageKind) -> Coordinator.StageOrder)? { nil }

    func expects(_ message: UpdateIntake.Message, from clientID: String) -> Bool {
        switch message {
        case .clientUpdate: plan.phase == .clustering
        case .recommendationUpdate: plan.phase == .recommendation
        case .startHistogram: plan.phase == .start
        case .decline: true
        default: false
        }
    }

    func revealsOnAccept(_ message: UpdateIntake.Message) -> Bool {
        if case .decline = message { return false }
        return true
    }

    mutating func add(_ message: UpdateIntake.Message, from clientID: String) throws {
        switch message {
        case .clientUpdate(let update):
            // Validated below 10^12 each: 10^6 clients' words cannot overflow Int64.
            for i in 0..<update.words.count { words[i] &+= update.words[i] }
            participants += 1
        case .recommendationUpdate(let update):
            for i in 0..<update.counts.count { sums[i] += Double(update.counts[i]) }
            participants += 1
        case .startHistogram(let histogram):
            for i in 0..<histogram.counts.count { sums[i] += Double(histogram.counts[i]) }
            participants += 1
        case .decline:
            declined += 1
        case .secAggAdvertise, .secAggShares, .secAggMaskedInput, .secAggConsistency, .secAggUnmask:
            throw CoordinatorError.state("a secure-aggregation message in a local round")
        }
    }

    mutating func resume(from persisted: SecAggRound.Persisted?) throws {}

    mutating func replay(_ message: UpdateIntake.Message, from clientID: String) throws {
        try add(message, from: clientID)
    }

    mutating func advance(now: Double, deadline: Double, expected: Int) -> AggregationStep {
        now >= deadline || participants + declined >= expected ? .ready : .open
    }

    func result() -> AggregateResult {
        let copies = Double(participants)
        var sums = sums
        var counts = counts
        if plan.phase == .clustering { (sums, counts) = plan.localNoise.decode(integers: words) }
        return AggregateResult(
            sums: sums, counts: counts, sumVariance: copies * plan.sumStd * plan.sumStd, countVariance: copies * plan.countStd * plan.countStd
        )
    }
}

extension SecAggRound: RoundAggregation {
    var participants: Int { finishedSum.map { _ in server.survivors.count } ?? 0 }
    var declined: Int { declinedIndices.count }
    var kinds: [Fedseg_V1_MessageKind] { stage.kinds }
    var allKinds: [Fedseg_V1_MessageKind] { [.decline, .secaggAdvertise, .secaggShares, .secaggMaskedInput, .secaggConsistency, .secaggUnmask] }

    var check: UpdateIntake.Check? {
        let context = context
        let plan = roundPlan
        return { clientID, message in try context.check(clientID, message, plan: plan) }
    }

    var stageOrder: (@Sendable (Fedseg_V1_MessageKind) -> Coordinator.StageOrder)? {
        let open = stage
        let round = roundPlan.round
        return { kind in
            guard let stage = Stage.of(kind: kind), stage != open else { return .open }
            return stage < open
                ? .closed("the \(stage) stage of round \(round) has closed")
                : .notOpenYet("the \(stage) stage of round \(round) is not open yet (\(open) is)")
        }
    }

    func expects(_ message: UpdateIntake.Message, from clientID: String) -> Bool {
        guard finishedSum == nil, let index = context.index[clientID] else { return false }
        return expects(message, from: index)
    }

    /// Stage messages are masked: the coordinator sees only the final, noised sum.
    func revealsOnAccept(_ message: UpdateIntake.Message) -> Bool { false }

    mutating func add(_ message: UpdateIntake.Message, from clientID: String) throws {
        guard let index = context.index[clientID] else { throw CoordinatorError.state("\(clientID) is not in the cohort") }
        try receive(message, from: index)
    }

    mutating func resume(from persisted: SecAggRound.Persisted?) throws {
        guard let persisted else { return }
        stage = persisted.stage
        stageDeadline = persisted.stageDeadline
        closedStages = persisted
    }

    /// Replayed in the order accepted, each in the stage it was accepted in; a message that was
    /// not part of its stage when that stage closed is left out, as it was then.
    mutating func replay(_ message: UpdateIntake.Message, from clientID: String) throws {
        guard let index = context.index[clientID] else { return }
        if let closedStages, !Self.belongs(message, from: index, to: closedStages) { return }
        let open = stage
        if let kind = Self.kind(of: message), let messageStage = Stage.of(kind: kind) { stage = messageStage }
        defer { stage = open }
        guard expects(message, from: index) else { return }
        try receive(message, from: index)
    }

    mutating func advance(now: Double, deadline: Double, expected: Int) -> AggregationStep {
        guard finishedSum == nil else { return .ready }
        switch advance(now: now) {
        case .open: return .open
        case .nextStage: return .nextStage(persisted)
        case .aborted(let reason): return .aborted("secure aggregation aborted: \(reason)")
        case .finished(let sum, _):
            finishedSum = sum
            return .ready
        }
    }

    func result() -> AggregateResult {
        let sum = finishedSum ?? []
        let survivors = server.survivors.count
        if roundPlan.phase == .start {
            let noise = roundPlan.distributedHistogramNoise(baseSensitivity: 1)
            let std = noise.decodedStd(survivors: survivors)
            return AggregateResult(sums: noise.decode(sum), counts: [], sumVariance: std * std, countVariance: std * std)
        }
        if roundPlan.phase == .clustering {
            let noise = roundPlan.distributedNoise
            let decoded = noise.decode(sum)
            let std = noise.decodedStd(survivors: survivors)
            return AggregateResult(sums: decoded.sums, counts: decoded.counts, sumVariance: std.sums * std.sums, countVariance: std.counts * std.counts)
        }
        let noise = roundPlan.distributedHistogramNoise(baseSensitivity: roundPlan.histogramSensitivity)
        let std = noise.decodedStd(survivors: survivors)
        return AggregateResult(sums: noise.decode(sum), counts: [], sumVariance: std * std, countVariance: std * std)
    }

    static func kind(of message: UpdateIntake.Message) -> Fedseg_V1_MessageKind? {
        switch message {
        case .decline: .decline
        case .secAggAdvertise: .secaggAdvertise
        case .secAggShares: .secaggShares
        case .secAggMaskedInput: .secaggMaskedInput
        case .secAggConsistency: .secaggConsistency
        case .secAggUnmask: .secaggUnmask
        case .clientUpdate, .recommendationUpdate, .startHistogram: nil
        }
    }

    /// Whether a recorded stage message was part of its stage when that stage closed.
    static func belongs(_ message: UpdateIntake.Message, from index: Int, to state: Persisted) -> Bool {
        guard let kind = kind(of: message), let stage = Stage.of(kind: kind) else { return true }
        guard stage < state.stage else { return true }
        switch kind {
        case .secaggAdvertise: return state.advertised.contains(index)
        case .secaggShares: return state.shared.contains(index)
        case .secaggMaskedInput: return state.survivors.contains(index)
        case .secaggConsistency: return state.signed?.contains(index) ?? false
        default: return !state.advertised.contains(index)
        }
    }
}

extension Matrix {
    /// The largest L2 distance between a row and the same row of `other`; where the two have
    /// different rows (a start that chose its own k), between a row of `other` and its nearest row here.
    func maxRowDistance(to other: Matrix) -> Double {
        guard rows == other.rows else {
            return KMeans.squaredDistances(other, to: self).map { Swift.max(0, $0.min() ?? 0).squareRoot() }.max() ?? 0
        }
        var largest = 0.0
        for j in 0..<rows {
            var squared = 0.0
            for t in 0..<cols {
                let diff = Double(other[j, t] - self[j, t])
                squared += diff * diff
            }
            largest = Swift.max(largest, squared.squareRoot())
        }
        return largest
    }
}
