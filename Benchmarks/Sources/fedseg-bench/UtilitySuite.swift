import ArgumentParser
import FedSegClustering
import FedSegEmbedding
import FedSegMath
import FedSegPrivacy
import FedSegSimulation
import Foundation

struct UtilitySuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "utility",
        abstract: "Segment quality under privacy: cost ratio and ARI of the private pipeline, in process."
    )

    @Flag(name: .long, help: "One JSON object on stdout.")
    var json = false

    @Option(name: .long, parsing: .upToNextOption, help: "Dataset sizes.")
    var n: [Int] = [10_000, 100_000]

    @Option(name: .long, parsing: .upToNextOption, help: "Privacy budgets ε (δ = 1e-6).")
    var epsilons: [Double] = [0.5, 1, 4]

    @Option(name: .long, help: "Seeds per row (the median is reported).")
    var seeds = 5

    @Option(name: .long, help: "Override the planner's number of rounds.")
    var rounds: Int?

    @Option(name: .long, help: "First seed.")
    var seed: UInt64 = 1

    @Option(name: .long, parsing: .upToNextOption, help: "Starts to compare: public (K-means on the public sample) and/or weighted (public candidates weighted by a DP histogram).")
    var starts: [String] = ["weighted"]

    @Option(name: .long, help: "Share of the budget for the candidate histogram (weighted start).")
    var histogramShare = PrivateClusteringPlan.defaultHistogramShare

    @Flag(inversion: .prefixedNo, help: "Run the sphere rows.")
    var sphere = true

    @Flag(inversion: .prefixedNo, help: "Run the planted-segment rows (20,000 users, 8 segments).")
    var planted = true

    @Option(name: .long, help: "Embedder for the planted data: hashing or minilm.")
    var embedder = "hashing"

    struct Row: Codable {
        var dataset: String
        var n: Int
        var epsilon: Double
        var mode: String
        var start: String
        var rounds: Int
        var epsilonSpent: Double
        var costRatio: Double
        var costRatioPublicStart: Double
        var ariTruth: Double?
        var ariNonPrivate: Double
        var seeds: Int
        var plan: String
    }

    struct Output: Codable {
        var suite = "utility"
        var delta = 1e-6
        var k = 16
        var d = 384
        var rows: [Row]
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    func run() throws {
        let k = 16
        let delta = 1e-6
        var rows: [Row] = []
        for size in (sphere ? n : []) {
            // Per seed: data, non-private baseline, public starts; reused across ε.
            struct Trial {
                var points: Matrix
                var truth: [Int32]
                var baselineCost: Double
                var baselineLabels: [Int32]
                var starts: [String: (Matrix, [Double])]
                var publicSamples: [String: Matrix]
            }
            var trials: [Trial] = []
            for s in 0..<seeds {
                let trialSeed = seed + UInt64(s)
                let mixture = SphereMixture(k: k, seed: trialSeed)
                let (points, truth) = mixture.sample(size, seed: trialSeed &* 7919)
                let baseline = KMeans.fit(points, .init(k: k, restarts: 5, seed: trialSeed))
                let inDistribution = mixture.sample(1000, seed: trialSeed &* 104_729).points
                let shifted = mixture.outOfDistributionSample(1000, seed: trialSeed &* 15_485_863).points
                trials.append(Trial(
                    points: points, truth: truth, baselineCost: baseline.inertia, baselineLabels: baseline.labels,
                    starts: [
                        "sphere": PrivateClustering.publicStart(inDistribution, k: k, seed: trialSeed),
                        "sphere-ood-public": PrivateClustering.publicStart(shifted, k: k, seed: trialSeed),
                    ],
                    publicSamples: ["sphere": inDistribution, "sphere-ood-public": shifted]
                ))
            }
            for dataset in ["sphere", "sphere-ood-public"] {
                for startKind in starts {
                for epsilon in epsilons {
                    var costRatios: [Double] = [], startRatios: [Double] = [], ariTruth: [Double] = [], ariBase: [Double] = [], spent: [Double] = []
                    var plan: PrivateClusteringPlan?
                    for (s, trial) in trials.enumerated() {
                        var (start, variances) = trial.starts[dataset]!
                        let thisPlan = try PrivateClusteringPlan.make(
                            epsilon: epsilon, delta: delta, k: k, dimension: 384, mode: .central, hasPublicStart: true, rounds: rounds,
                            histogramShare: startKind == "weighted" ? histogramShare : 0
                        )
                        plan = thisPlan
                        var noise = GaussianSampler(generator: SeededRandom(seed: seed + UInt64(s), stream: 0xD9))
                        var prior: [PrivateClustering.Release] = []
                        if let weighted = PrivateClustering.weightedStart(
                            shards: [trial.points], publicSample: trial.publicSamples[dataset]!, k: k, candidates: 8 * k,
                            plan: thisPlan, noise: &noise, seed: seed + UInt64(s), publicStart: start
                        ) {
                            (start, variances) = (weighted.centroids, weighted.variances)
                            prior = [weighted.release]
                        }
                        let result = PrivateClustering.run(
                            shards: [trial.points], start: start, startVariances: variances, plan: thisPlan, noise: &noise, priorReleases: prior
                        )
                        let labels = KMeans.assign(trial.points, to: result.centroids)
                        costRatios.append(Metrics.inertia(points: trial.points, centroids: result.centroids, labels: labels) / trial.baselineCost)
                        startRatios.append(Metrics.cost(points: trial.points, centroids: start) / trial.baselineCost)
                        ariTruth.append(Metrics.adjustedRandIndex(labels, trial.truth))
                        ariBase.append(Metrics.adjustedRandIndex(labels, trial.baselineLabels))
                        spent.append(try result.epsilonSpent())
                    }
                    rows.append(Row(
                        dataset: dataset, n: size, epsilon: epsilon, mode: "central", start: startKind, rounds: plan!.rounds,
                        epsilonSpent: Self.median(spent), costRatio: Self.median(costRatios),
                        costRatioPublicStart: Self.median(startRatios), ariTruth: Self.median(ariTruth),
                        ariNonPrivate: Self.median(ariBase), seeds: seeds, plan: plan!.reason
                    ))
                }
                }
            }
        }
        if planted { rows += try plantedRows() }
        if json {
            try printJSON(Output(rows: rows))
            return
        }
        print("dataset              n        ε  mode     start     rounds  ε spent  cost ratio  (public start)  ARI truth  ARI non-private")
        for row in rows {
            print(
                row.dataset.padding(toLength: 18, withPad: " ", startingAt: 0)
                    + String(format: " %7d %6.2f  %-8@ %-9@ %5d %8.4f %11.4f %15.4f %10.4f %16.4f", row.n, row.epsilon, row.mode, row.start, row.rounds, row.epsilonSpent, row.costRatio, row.costRatioPublicStart, row.ariTruth ?? .nan, row.ariNonPrivate)
            )
        }
        if let plan = rows.first?.plan { print("plan (first row): \(plan)") }
    }

    /// 20,000 generated users in 8 planted segments, profiles embedded; the public sample is the
    /// item catalogue embedded the same way. Central noise at ε = 1, local noise with 20 shards at ε = 8.
    func plantedRows() throws -> [Row] {
        let k = 8
        let delta = 1e-6
        let model: any Embedder = embedder == "minilm" ? try MiniLMEmbedder() : HashingEmbedder(dimension: 384, seed: 1)
        var results: [String: [(cost: Double, ari: Double, ariBase: Double, spent: Double, start: Double)]] = [:]
        var plans: [String: PrivateClusteringPlan] = [:]
        for s in 0..<seeds {
            let trialSeed = seed + UInt64(s)
            let data = PlantedSegments(users: 20_000, segments: k, seed: trialSeed).generate()
            let index = data.itemIndex
            let points = try model.embed(data.users.map { data.profileText(of: $0, itemIndex: index) })
            let catalogue = try model.embed(data.items.map { data.profileText(of: Dataset.User(user: "", texts: [], items: [$0.item]), itemIndex: index) })
            let truth = data.users.map { Int32($0.segment!.dropFirst())! }
            let baseline = KMeans.fit(points, .init(k: k, restarts: 5, seed: trialSeed))
            for (mode, epsilon) in [(NoiseMode.central, 1.0), (.local(shards: 20), 8.0)] {
                let plan = try PrivateClusteringPlan.make(
                    epsilon: epsilon, delta: delta, k: k, dimension: points.cols, mode: mode, hasPublicStart: true, rounds: rounds,
                    histogramShare: histogramShare
                )
                let key = "\(mode)"
                plans[key] = plan
                let shards = (0..<20).map { points.rows($0 * points.rows / 20..<($0 + 1) * points.rows / 20) }
                var noise = GaussianSampler(generator: SeededRandom(seed: trialSeed, stream: 0xE1))
                var (start, variances) = PrivateClustering.publicStart(catalogue, k: k, seed: trialSeed)
                let startCost = Metrics.cost(points: points, centroids: start) / baseline.inertia
                var prior: [PrivateClustering.Release] = []
                if let weighted = PrivateClustering.weightedStart(
                    shards: shards, publicSample: catalogue, k: k, candidates: 8 * k, plan: plan, noise: &noise,
                    seed: trialSeed, publicStart: start
                ) {
                    (start, variances) = (weighted.centroids, weighted.variances)
                    prior = [weighted.release]
                }
                let result = PrivateClustering.run(shards: shards, start: start, startVariances: variances, plan: plan, noise: &noise, priorReleases: prior)
                let labels = KMeans.assign(points, to: result.centroids)
                results[key, default: []].append((
                    Metrics.inertia(points: points, centroids: result.centroids, labels: labels) / baseline.inertia,
                    Metrics.adjustedRandIndex(labels, truth), Metrics.adjustedRandIndex(labels, baseline.labels),
                    try result.epsilonSpent(), startCost
                ))
            }
        }
        return [(NoiseMode.central, 1.0), (.local(shards: 20), 8.0)].map { mode, epsilon in
            let key = "\(mode)"
            let r = results[key]!
            return Row(
                dataset: "planted-\(embedder)", n: 20_000, epsilon: epsilon, mode: key, start: histogramShare > 0 ? "weighted" : "public",
                rounds: plans[key]!.rounds, epsilonSpent: Self.median(r.map(\.spent)), costRatio: Self.median(r.map(\.cost)),
                costRatioPublicStart: Self.median(r.map(\.start)), ariTruth: Self.median(r.map(\.ari)),
                ariNonPrivate: Self.median(r.map(\.ariBase)), seeds: seeds, plan: plans[key]!.reason
            )
        }
    }
}
