import FedSegClustering
import FedSegMath
import FedSegPrivacy
import Foundation

/// The private clustering pipeline with secure aggregation and distributed noise: the same plan,
/// start and inverse-variance merge as `PrivateClustering.run`, but every round's (sums, counts)
/// is quantised, noised with a distributed discrete Gaussian share per client and summed through
/// SecAgg+, so the coordinator only ever sees the noised total.
public enum DistributedClustering {
    public struct RoundReport: Sendable {
        public var survivors: Int
        public var clientSeconds: Double
        public var serverSeconds: Double
    }

    public struct Result: Sendable {
        public var centroids: Matrix
        public var noise: DistributedNoise
        public var rounds: [RoundReport]
    }

    /// `dropout`: share of clients that vanish after sharing keys, each round. `minimumSurvivors`
    /// sizes each client's noise share; fewer survivors abort the round.
    public static func run(
        shards: [Matrix], start: Matrix, startVariances: [Double], plan: PrivateClusteringPlan, minimumSurvivors: Int,
        dropout: Double, seed: UInt64, firstRound: UInt64 = 1
    ) throws -> Result {
        let k = start.rows
        let d = start.cols
        let maxUsers = shards.reduce(0) { $0 + $1.rows }
        let noise = try DistributedNoise.make(noise: plan.noise, k: k, dimension: d, minimumSurvivors: minimumSurvivors, maxUsers: maxUsers)
        var centroids = start
        var variances = startVariances
        var reports: [RoundReport] = []
        for round in 1...plan.rounds {
            let current = centroids
            let words = try SecAggSession.parallelMap(Array(shards.indices)) { index -> [UInt32] in
                let shard = shards[index]
                let statistics = shard.rows > 0
                    ? LocalStatistics.compute(points: shard, centroids: current, clipNorm: Float(plan.clipNorm))
                    : LocalStatistics(k: k, dimension: d)
                var rounding = BufferedSecureRandom()
                var sampler = try DiscreteGaussianSampler(sigma: noise.clientSigma, generator: BufferedSecureRandom())
                return noise.encode(statistics, rounding: &rounding, noise: &sampler)
            }
            let parameters = SecAgg.Parameters(
                clients: shards.count, length: noise.length, round: firstRound + UInt64(round - 1), graphSeed: seed &+ UInt64(round),
                minimumSurvivors: minimumSurvivors
            )
            let dropouts = SecAggSession.Dropouts.random(fraction: dropout, clients: shards.count, seed: seed &+ UInt64(round) &* 31)
            let outcome = try SecAggSession.run(parameters: parameters, input: { words[$0] }, dropouts: dropouts)
            let (sums, counts) = noise.decode(outcome.sum)
            let std = noise.decodedStd(survivors: outcome.survivors.count)
            PrivateClustering.merge(
                centroids: &centroids, variances: &variances, sums: sums, counts: counts,
                sumVariance: std.sums * std.sums, countVariance: std.counts * std.counts
            )
            reports.append(RoundReport(survivors: outcome.survivors.count, clientSeconds: outcome.clientSeconds, serverSeconds: outcome.serverSeconds))
        }
        return Result(centroids: centroids, noise: noise, rounds: reports)
    }
}
