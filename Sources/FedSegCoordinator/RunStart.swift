import FedSegClustering
import FedSegEmbedding
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import Foundation

/// What a run starts from, computed before the coordinator's state machine sees it: the start
/// centroids from public seed phrases (embedded here, on the coordinator) or from seeded random
/// directions. Neither touches client data, so neither costs privacy.
public enum RunStart {
    public struct Prepared: Sendable {
        public var parameters: RunParameters
        public var centroids: Matrix
        /// Variance of each start centroid as an estimate (infinite for random directions: the
        /// first round's release replaces it entirely).
        public var variances: [Double]
        public var seedVectors: Matrix?
        /// Public candidates for the start histogram (public starts that spend a share on it).
        public var startCandidates: StartCandidates?
    }

    public static func prepare(_ parameters: RunParameters, settings: Coordinator.Settings) throws -> Prepared {
        try parameters.validate()
        switch parameters.initialization {
        case .random:
            var noise = GaussianSampler(generator: SeededRandom(seed: parameters.seed, stream: 0x5EED))
            var centroids = Matrix(rows: parameters.k, cols: parameters.dimension)
            for i in 0..<centroids.count { centroids.storage[i] = Float(noise.nextStandard()) }
            centroids.normalizeRows()
            return Prepared(
                parameters: parameters, centroids: centroids, variances: [Double](repeating: .infinity, count: parameters.k),
                seedVectors: nil
            )
        case .public:
            let vectors = try embedSeedPhrases(parameters, settings: settings)
            let start = PrivateClustering.publicStart(vectors, k: parameters.k, seed: parameters.seed)
            let candidates = parameters.startHistogramShare > 0 ? StartCandidates.make(vectors, k: parameters.k, seed: parameters.seed) : nil
            return Prepared(
                parameters: parameters, centroids: start.centroids, variances: start.variances, seedVectors: vectors, startCandidates: candidates
            )
        }
    }

    /// Embeds the run's seed phrases with the embedder the clients use (named by the run).
    public static func embedSeedPhrases(_ parameters: RunParameters, settings: Coordinator.Settings) throws -> Matrix {
        let base = try embedder(identifier: parameters.embedderID, files: settings.modelFiles)
        guard base.dimension == parameters.dimension else {
            throw CoordinatorError.embedder("\(parameters.embedderID) has dimension \(base.dimension), the run says \(parameters.dimension)")
        }
        let embedder: any Embedder = try settings.embeddingCache.map { try CachingEmbedder(base: base, directory: $0) } ?? base
        return try embedder.embed(parameters.seedPhrases)
    }

    /// The embedder an identifier names: `all-MiniLM-L6-v2`, or `hashing-v1-d<D>-s<S>`. A run
    /// names exactly one; the coordinator refuses to fall back to another, since its vectors would
    /// not be comparable with the clients'.
    public static func embedder(identifier: String, files: MiniLMModelFiles) throws -> any Embedder {
        switch EmbedderIdentifier.parse(identifier) {
        case .miniLM?:
            do {
                return try MiniLMEmbedder(files: files)
            } catch {
                throw CoordinatorError.embedder("MiniLM could not be loaded: \(error)")
            }
        case .hashing(let dimension, let seed)?:
            return HashingEmbedder(dimension: dimension, seed: seed)
        case nil:
            break
        }
        throw CoordinatorError.embedder("unknown embedder \(identifier) (all-MiniLM-L6-v2 or hashing-v1-d<D>-s<S>)")
    }
}
