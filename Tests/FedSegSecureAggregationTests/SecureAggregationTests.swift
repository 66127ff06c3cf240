import FedSegClustering
import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import Foundation
import Testing

@testable import FedSegSecureAggregation

@Suite("Secure aggregation")
struct SecureAggregationTests {
    static func inputs(clients: Int, length: Int, seed: UInt64) -> [[UInt32]] {
        var rng = SeededRandom(seed: seed)
        return (0..<clients).map { _ in (0..<length).map { _ in UInt32(truncatingIfNeeded: rng.next()) } }
    }

    static func plainSum(_ inputs: [[UInt32]], of clients: Set<Int>, length: Int) -> [UInt32] {
        var sum = [UInt32](repeating: 0, count: length)
        for c in clients { for i in 0..<length { sum[i] &+= inputs[c][i] } }
        return sum
    }

    @Test("Shamir over GF(256): any t shares rebuild the secret; the field is a field")
    func shamir() throws {
        for a in UInt8(1)...255 { #expect(Shamir.multiply(a, Shamir.divide(1, a)) == 1) }
        let secret = (0..<32).map { UInt8($0 * 7 % 256) }
        let shares = try Shamir.split(secret, threshold: 5, at: Array(1...12))
        var rng = SeededRandom(seed: 2)
        for _ in 0..<20 {
            let subset = Array(shares.shuffled(using: &rng).prefix(5))
            #expect(try Shamir.combine(subset, threshold: 5) == secret)
        }
        // Fewer than t shares: interpolating them gives something else.
        #expect(try Shamir.combine(Array(shares.prefix(4)), threshold: 4) != secret)
        #expect(throws: Shamir.Failure.tooFewShares(needed: 5, have: 4)) { try Shamir.combine(Array(shares.prefix(4)), threshold: 5) }
    }

    @Test("the neighbour graph is symmetric with the chosen degree")
    func graph() {
        for n in [5, 40, 1000] {
            let degree = SecAgg.Parameters(clients: n, length: 1, round: 1, graphSeed: 3).degree
            let graph = NeighborGraph(clients: n, degree: degree, seed: 3)
            for (u, list) in graph.neighbors.enumerated() {
                #expect(!list.contains(u))
                #expect(list.count >= degree)
                for v in list { #expect(graph.neighbors[v].contains(u)) }
            }
        }
    }

    // t > degree/2 (against a coordinator that lies about who dropped) means a secret needs more
    // than half its neighbours: at degree 4⌈log₂ n⌉ + 4 that holds to about 20% dropout.
    @Test("the unmasked sum equals the plain sum exactly, with 0%, 10%, 20% and (small cohorts) 30% dropout, at several client counts",
          arguments: [(12, 0.0), (12, 0.3), (50, 0.1), (50, 0.2), (200, 0.0), (200, 0.1), (200, 0.2)])
    func exactSum(clients: Int, dropout: Double) throws {
        let length = 257
        let inputs = Self.inputs(clients: clients, length: length, seed: UInt64(clients))
        let parameters = SecAgg.Parameters(clients: clients, length: length, round: 11, graphSeed: 5)
        let dropouts = SecAggSession.Dropouts.random(fraction: dropout, clients: clients, seed: 9)
        let outcome = try SecAggSession.run(parameters: parameters, input: { inputs[$0] }, dropouts: dropouts)
        let survivors = Set(0..<clients).subtracting(dropouts.beforeMasking)
        #expect(outcome.survivors == survivors)
        #expect(outcome.sum == Self.plainSum(inputs, of: survivors, length: length))
    }

    @Test("dropouts at every stage: before advertising, sharing, masking and unmasking")
    func dropoutsEverywhere() throws {
        let clients = 60
        let length = 64
        let inputs = Self.inputs(clients: clients, length: length, seed: 4)
        var dropouts = SecAggSession.Dropouts()
        dropouts.beforeAdvertising = [0, 1]
        dropouts.beforeSharing = [2, 3]
        dropouts.beforeMasking = [4, 5, 6, 7]
        dropouts.beforeUnmasking = [8, 9]
        let outcome = try SecAggSession.run(parameters: SecAgg.Parameters(clients: clients, length: length, round: 2, graphSeed: 1), input: { inputs[$0] }, dropouts: dropouts)
        let survivors = Set(10..<clients).union([8, 9])
        #expect(outcome.survivors == survivors)
        #expect(outcome.sum == Self.plainSum(inputs, of: survivors, length: length))
    }

    @Test("below the survivor threshold the round aborts and nothing is released")
    func abort() throws {
        let clients = 20
        let inputs = Self.inputs(clients: clients, length: 8, seed: 1)
        let parameters = SecAgg.Parameters(clients: clients, length: 8, round: 3, graphSeed: 2, minimumSurvivors: 15)
        let dropouts = SecAggSession.Dropouts.random(fraction: 0.3, clients: clients, seed: 3)
        #expect(throws: SecAgg.Failure.tooFewSurvivors(survivors: 14, minimum: 15)) {
            try SecAggSession.run(parameters: parameters, input: { inputs[$0] }, dropouts: dropouts)
        }
        // The server's own check refuses to unmask too.
        var server = SecAggServer(parameters: parameters)
        #expect(throws: SecAgg.Failure.self) { try server.unmask([], graph: NeighborGraph(clients: clients, seed: 2)) }
        #expect(throws: SecAgg.Failure.self) { try server.receiveMasked(from: 0, [UInt32](repeating: 0, count: 8)) }
    }

    @Test("a secret with fewer than t surviving share holders aborts the round")
    func secretLost() throws {
        let clients = 12
        let parameters = SecAgg.Parameters(clients: clients, length: 4, round: 1, graphSeed: 1, minimumSurvivors: 1)
        var dropouts = SecAggSession.Dropouts()
        // Everyone but clients 0 and 1 sends a vector and then vanishes: 0's self-mask seed has one share.
        dropouts.beforeUnmasking = Set(2..<clients)
        #expect(throws: SecAgg.Failure.self) {
            try SecAggSession.run(parameters: parameters, input: { _ in [1, 2, 3, 4] }, dropouts: dropouts)
        }
    }

    @Test("a masked vector is uniform over Z_2^32 whatever the input, and the server holds only the running sum")
    func maskedUniform() throws {
        let clients = 8
        let length = 20_000
        let parameters = SecAgg.Parameters(clients: clients, length: length, round: 4, graphSeed: 7)
        let graph = NeighborGraph(clients: clients, degree: parameters.degree, seed: 7)
        let nodes = try (0..<clients).map { try SecAggClient(index: $0, parameters: parameters, graph: graph) }
        var server = SecAggServer(parameters: parameters)
        for node in nodes { server.receive(node.advertise()) }
        let inbox = server.route(try nodes.map { try $0.shareKeys(server.directory) })
        // A constant, maximally structured input.
        let masked = try nodes[0].maskedInput([UInt32](repeating: 0, count: length), shares: inbox[0] ?? [], directory: server.directory)
        var buckets = [Double](repeating: 0, count: 16)
        for word in masked { buckets[Int(word >> 28)] += 1 }
        let expected = Double(length) / 16
        let chiSquare = buckets.reduce(0) { $0 + ($1 - expected) * ($1 - expected) / expected }
        #expect(chiSquare < 37.7, "χ² with 15 degrees of freedom: \(chiSquare) (p = 0.001 at 37.7)")
        var lowBits = [Double](repeating: 0, count: 16)
        for word in masked { lowBits[Int(word & 15)] += 1 }
        #expect(lowBits.reduce(0) { $0 + ($1 - expected) * ($1 - expected) / expected } < 37.7)
        // The server's state after receiving it is the sum, not the vector: by construction
        // `receiveMasked` folds it into `runningSum` and keeps nothing else.
        try server.receiveMasked(from: 0, masked)
        #expect(server.runningSum == masked)
        let other = try nodes[1].maskedInput([UInt32](repeating: 0, count: length), shares: inbox[1] ?? [], directory: server.directory)
        try server.receiveMasked(from: 1, other)
        #expect(server.runningSum == zip(masked, other).map { $0 &+ $1 })
        #expect(throws: SecAgg.Failure.self) { try server.receiveMasked(from: 1, other) }
    }

    @Test("a client never reveals both secrets of one neighbour")
    func neverBoth() throws {
        let parameters = SecAgg.Parameters(clients: 6, length: 4, round: 1, graphSeed: 1)
        let graph = NeighborGraph(clients: 6, degree: parameters.degree, seed: 1)
        let nodes = try (0..<6).map { try SecAggClient(index: $0, parameters: parameters, graph: graph) }
        var server = SecAggServer(parameters: parameters)
        for node in nodes { server.receive(node.advertise()) }
        let inbox = server.route(try nodes.map { try $0.shareKeys(server.directory) })
        _ = try nodes[0].maskedInput([0, 0, 0, 0], shares: inbox[0] ?? [], directory: server.directory)
        _ = try nodes[0].unmask(survivors: Set(0..<6))
        #expect(throws: SecAgg.Failure.self) { try nodes[0].unmask(survivors: [0]) }
    }

    @Test("distributed discrete Gaussian: the decoded sum is the true sum plus noise of the planned size; no wrap")
    func distributedNoise() throws {
        let k = 2, d = 8, clients = 40
        let noise = SumCountNoise(noiseMultiplier: 1.0, clipNorm: 1, countShare: 0.1)
        let plan = try FixedPointNoise.distributed(noise: noise, k: k, dimension: d, minimumSurvivors: 30, maxUsers: 4000)
        #expect(plan.clientSigma >= 4)
        #expect(abs(plan.sigma / plan.sensitivity - 1.0) < 1e-12, "charged at the planned z")
        // Quantisation costs little: decoded noise within 2% of the float mechanism's.
        let std = plan.decodedStd(survivors: 30)
        #expect(std.sums / noise.sumStd < 1.02 && std.sums / noise.sumStd >= 1)
        var rng = SeededRandom(seed: 8)
        var truthSums = [Double](repeating: 0, count: k * d)
        var truthCounts = [Double](repeating: 0, count: k)
        var words: [[UInt32]] = []
        for _ in 0..<clients {
            var points = rng.normalMatrix(rows: 100, cols: d)
            points.normalizeRows()
            let statistics = LocalStatistics.compute(points: points, centroids: rng.normalMatrix(rows: k, cols: d), clipNorm: 1)
            for i in truthSums.indices { truthSums[i] += statistics.sums[i] }
            for j in 0..<k { truthCounts[j] += Double(statistics.counts[j]) }
            var rounding = SecureRandom()
            var sampler = try DiscreteGaussianSampler(sigma: plan.clientSigma, generator: SecureRandom())
            words.append(plan.encode(statistics, rounding: &rounding, noise: &sampler))
        }
        var sum = [UInt32](repeating: 0, count: plan.length)
        for w in words { for i in sum.indices { sum[i] &+= w[i] } }
        let decoded = plan.decode(sum)
        let expected = plan.decodedStd(survivors: clients)
        let sumErrors = zip(decoded.sums, truthSums).map { $0 - $1 }
        let rms = (sumErrors.map { $0 * $0 }.reduce(0, +) / Double(sumErrors.count)).squareRoot()
        #expect(rms < 3 * expected.sums && rms > expected.sums / 3, "rms error \(rms) against σ \(expected.sums)")
        for j in 0..<k { #expect(abs(decoded.counts[j] - truthCounts[j]) < 6 * expected.counts + 1) }
    }
}
