import FedSegMath
import FedSegPrivacy
import FedSegProtocol

/// The public item universe: ids the coordinator publishes, in a fixed order.
public struct ItemCatalog: Sendable, Equatable {
    public let ids: [String]
    public let index: [String: Int]

    public init(ids: [String]) {
        self.ids = ids
        self.index = Dictionary(ids.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public var count: Int { ids.count }
}

extension Fedseg_V1_RoundPlan {
    /// L2 sensitivity of a recommendation round's histogram: √m, or √(2m) with the global row.
    public var histogramSensitivity: Double {
        SegmentHistogram.sensitivity(maxItemsPerUser: Int(maxItemsPerUser), globalRow: globalRow)
    }
}

/// Per-segment item counts: what clients release in the recommendation phase.
///
/// Each user adds at most `maxItemsPerUser` distinct catalogue items (a uniform sample without
/// replacement when they have more) to their segment's histogram, so one user moves one
/// segment's histogram by at most √m in L2: the release's sensitivity. With a global row (row
/// `segments`), the same items count there too: √(2m). The global row is what a new user's list
/// is ranked from; without it that list sums every segment's noise.
public struct SegmentHistogram: Sendable, Equatable {
    public let segments: Int
    public let items: Int
    /// Whether row `segments` counts every user's items again, whatever their segment.
    public let globalRow: Bool
    /// Row-major rows x items: the segments' rows, then the global row when there is one.
    public var counts: [Double]

    public init(segments: Int, items: Int, globalRow: Bool = false) {
        self.segments = segments
        self.items = items
        self.globalRow = globalRow
        self.counts = [Double](repeating: 0, count: (segments + (globalRow ? 1 : 0)) * items)
    }

    /// Rows in `counts`.
    public var rows: Int { segments + (globalRow ? 1 : 0) }

    /// L2 sensitivity of the whole histogram to one user: √m, or √(2m) with a global row.
    public static func sensitivity(maxItemsPerUser m: Int, globalRow: Bool = false) -> Double { Double(m * (globalRow ? 2 : 1)).squareRoot() }

    public mutating func add<G: RandomNumberGenerator>(
        userItems: [String], segment: Int, catalog: ItemCatalog, maxItemsPerUser m: Int, using rng: inout G
    ) {
        precondition(segment >= 0 && segment < segments, "segment out of range")
        precondition(m >= 1, "a user contributes at least one item")
        var known: [Int] = []
        var seen = Set<Int>()
        for id in userItems {
            // Items outside the catalogue are dropped; how many is never counted (no bound on it).
            guard let i = catalog.index[id] else { continue }
            if seen.insert(i).inserted { known.append(i) }
        }
        if known.count > m {
            known.shuffle(using: &rng)
            known.removeLast(known.count - m)
        }
        for i in known {
            counts[segment * items + i] += 1
            if globalRow { counts[segments * items + i] += 1 }
        }
    }

    public mutating func merge(_ other: SegmentHistogram) {
        precondition(other.segments == segments && other.items == items && other.globalRow == globalRow, "histograms of different shapes")
        for i in counts.indices { counts[i] += other.counts[i] }
    }

    /// Adds discrete Gaussian noise N_Z(0, σ²) with σ = z·sensitivity to every count: exact
    /// integer noise on integer counts, so nothing leaks through floating point.
    @inlinable
    public mutating func addNoise<G: RandomNumberGenerator>(
        noiseMultiplier z: Double, maxItemsPerUser m: Int, generator: G
    ) throws {
        var sampler = try DiscreteGaussianSampler(sigma: z * Self.sensitivity(maxItemsPerUser: m, globalRow: globalRow), generator: generator)
        for i in counts.indices { counts[i] += Double(sampler.next()) }
    }

    /// The best unbiased estimate of each segment's counts when there is a global row (each
    /// count carrying independent noise of one σ): every segment's row gains (G − ΣS)/(k + 1),
    /// its share of what the global row says the segments' rows missed. The rows then sum to
    /// (ΣS + k·G)/(k + 1), and each count's noise has variance σ²·k/(k + 1) (the global list's,
    /// kσ²/(k + 1), against kσ² from the segments' rows alone). Without a global row: the rows as
    /// they are. Returns a histogram without a global row, and the factor on σ.
    public func combined() -> (histogram: SegmentHistogram, noiseFactor: Double) {
        var result = SegmentHistogram(segments: segments, items: items)
        result.counts = Array(counts.prefix(segments * items))
        guard globalRow, segments > 0 else { return (result, 1) }
        let k = Double(segments)
        for i in 0..<items {
            var rowSum = 0.0
            for s in 0..<segments { rowSum += counts[s * items + i] }
            let share = (counts[segments * items + i] - rowSum) / (k + 1)
            for s in 0..<segments { result.counts[s * items + i] += share }
        }
        return (result, (k / (k + 1)).squareRoot())
    }
}
