import FedSegMath
import FedSegPrivacy

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

/// Per-segment item counts: what clients release in the recommendation phase.
///
/// Each user adds at most `maxItemsPerUser` distinct catalogue items (a uniform sample without
/// replacement when they have more) to their segment's histogram, so one user moves one
/// segment's histogram by at most √m in L2: the release's sensitivity.
public struct SegmentHistogram: Sendable, Equatable {
    public let segments: Int
    public let items: Int
    /// Row-major segments x items.
    public var counts: [Double]

    public init(segments: Int, items: Int) {
        self.segments = segments
        self.items = items
        self.counts = [Double](repeating: 0, count: segments * items)
    }

    /// L2 sensitivity of the whole histogram to one user.
    public static func sensitivity(maxItemsPerUser m: Int) -> Double { Double(m).squareRoot() }

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
        for i in known { counts[segment * items + i] += 1 }
    }

    public mutating func merge(_ other: SegmentHistogram) {
        precondition(other.segments == segments && other.items == items, "histograms of different shapes")
        for i in counts.indices { counts[i] += other.counts[i] }
    }

    /// Adds discrete Gaussian noise N_Z(0, σ²) with σ = z·√m to every count: exact integer noise
    /// on integer counts, so nothing leaks through floating point.
    @inlinable
    public mutating func addNoise<G: RandomNumberGenerator>(
        noiseMultiplier z: Double, maxItemsPerUser m: Int, generator: G
    ) throws {
        var sampler = try DiscreteGaussianSampler(sigma: z * Self.sensitivity(maxItemsPerUser: m), generator: generator)
        for i in counts.indices { counts[i] += Double(sampler.next()) }
    }
}
