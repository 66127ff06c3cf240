import FedSegClustering
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import FedSegSecureAggregation

/// Builds the plan of a run's next round from the run's privacy plan: no state, no storage, so
/// what a round will publish is a function of the run and the cohort alone.
enum RoundPlanner {
    /// A round that cannot be planned ends the run with this reason.
    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    static func plan(run: Coordinator.ActiveRun, phase: Fedseg_V1_Phase, cohort: [String], deadline: Double) throws -> Fedseg_V1_RoundPlan {
        let p = run.parameters
        var plan = Fedseg_V1_RoundPlan()
        plan.protocolVersion = fedsegProtocolVersion
        plan.runID = run.id
        plan.k = UInt32(run.k)
        plan.dimension = UInt32(p.dimension)
        plan.centroids = run.centroids.storage
        plan.clipNorm = p.clipNorm
        plan.privacyMode = p.privacyMode.wire
        plan.samplingRate = p.samplingRate
        plan.deadlineUnixMs = Int64(deadline * 1000)
        plan.minParticipants = UInt32(p.minParticipants)
        plan.embedderID = p.embedderID
        plan.delta = p.delta
        plan.expectedParticipants = UInt32(max(1, Int((Double(cohort.count) * p.samplingRate).rounded())))
        plan.phase = phase
        switch phase {
        case .start:
            // One user adds 1 to one candidate's count: L2 sensitivity 1.
            guard let z = run.privacy.clustering.histogramNoiseMultiplier, let candidates = run.startCandidates else {
                throw CoordinatorError.state("a start round without a planned histogram or candidates")
            }
            plan.noiseMultiplier = z
            plan.sumStd = z
            plan.countStd = z
            plan.candidateCount = UInt32(candidates.count)
            plan.candidates = candidates.centers
        case .clustering:
            // The fixed-point grid of a local round; a distributed round's is in its SecAgg plan.
            let noise = FixedPointNoise.local(noise: clusteringNoise(run: run, plan: &plan), k: run.k, dimension: p.dimension)
            plan.noiseMultiplier = run.privacy.clustering.noiseMultiplier
            if p.privacyMode == .local {
                plan.sumScale = noise.sumScale
                plan.countScale = noise.countScale
                plan.integerSigma = noise.clientSigma
            }
            let decoded = noise.decodedStd(survivors: 1)
            plan.sumStd = decoded.sums
            plan.countStd = decoded.counts
        default:
            guard let z = run.privacy.recommendationNoiseMultiplier else { throw CoordinatorError.state("no recommendation phase") }
            plan.noiseMultiplier = z
            plan.globalRow = p.globalRow
            plan.maxItemsPerUser = UInt32(p.maxItemsPerUser)
            plan.sumStd = z * plan.histogramSensitivity
            plan.countStd = plan.sumStd
            plan.catalogSize = UInt32(p.catalog.count)
            plan.catalogItems = p.catalog
        }
        guard p.privacyMode == .distributed else { return plan }
        let minimum = max(2, p.minParticipants)
        let colluders = p.assumedColluders
        guard cohort.count >= minimum else {
            throw Refusal(description: "distributed mode: \(cohort.count) active clients, secure aggregation needs at least \(minimum)")
        }
        do {
            plan.secagg = try secAggPlan(plan: plan, run: run, cohort: cohort, minimum: minimum, colluders: colluders)
        } catch {
            throw Refusal(description: "distributed mode: \(error)")
        }
        // What the fewest honest survivors' shares carry, in the units the coordinator decodes to.
        let honest = Double(minimum - colluders).squareRoot()
        let scale = phase == .clustering ? plan.secagg.sumScale : plan.secagg.countScale
        plan.sumStd = plan.secagg.clientSigma * honest / scale
        plan.countStd = phase == .clustering ? plan.secagg.clientSigma * honest / plan.secagg.countScale : plan.sumStd
        return plan
    }

    /// A clustering round's noise. Once a Lloyd round has been merged, the centroids are close
    /// to their users, so later rounds are centred: each user's offset from its centroid is
    /// clipped to a bound derived from released values (`PrivateClustering.centeredClipNorm`)
    /// and the same noise multiplier needs proportionally less noise. Sets the plan's
    /// `clip_norm` and `centered`.
    static func clusteringNoise(run: Coordinator.ActiveRun, plan: inout Fedseg_V1_RoundPlan) -> SumCountNoise {
        let p = run.parameters
        if p.centeredClipping, run.committedRounds >= 1, let spreads = run.spreads, spreads.count == run.k,
            let bound = PrivateClustering.centeredClipNorm(spreads: spreads, variances: run.variances, clipNorm: p.clipNorm)
        {
            plan.clipNorm = bound
            plan.centered = true
        }
        return run.privacy.clustering.noise(clipNorm: plan.clipNorm)
    }

    /// The secure-aggregation plan of a distributed round: the cohort in a fixed order, a fresh
    /// graph seed, and quantisation and noise shares sized so that any `minimum` survivors'
    /// sum carries the run's planned noise and the sum of all never wraps.
    static func secAggPlan(
        plan: Fedseg_V1_RoundPlan, run: Coordinator.ActiveRun, cohort: [String], minimum: Int, colluders: Int
    ) throws -> Fedseg_V1_SecAggPlan {
        let p = run.parameters
        var parameters = SecAgg.Parameters(clients: cohort.count, length: plan.secAggWidth, round: plan.round, graphSeed: 0, minimumSurvivors: minimum)
        parameters.degree = min(parameters.degree, 254)
        // t > degree/2: see `Fedseg_V1_SecAggPlan.validate`.
        parameters.threshold = parameters.degree / 2 + 1
        var secagg = Fedseg_V1_SecAggPlan()
        secagg.cohort = cohort
        secagg.degree = UInt32(parameters.degree)
        secagg.threshold = UInt32(parameters.threshold)
        secagg.minSurvivors = UInt32(minimum)
        secagg.assumedColluders = UInt32(colluders)
        var random = SecureRandom()
        secagg.graphSeed = random.next()
        secagg.length = UInt32(plan.secAggWidth)
        secagg.stageSeconds = p.roundDeadlineSeconds / 5
        switch plan.phase {
        case .start:
            let noise = try DistributedIntegerNoise.make(
                noiseMultiplier: plan.noiseMultiplier, baseSensitivity: 1, length: plan.secAggWidth, minimumSurvivors: minimum,
                colluders: colluders, clients: cohort.count, maxTotal: p.maxUsers
            )
            secagg.sumScale = Double(noise.scale)
            secagg.countScale = Double(noise.scale)
            secagg.clientSigma = noise.clientSigma
        case .clustering:
            let noise = try FixedPointNoise.distributed(
                noise: run.privacy.clustering.noise(clipNorm: plan.clipNorm), k: run.k, dimension: p.dimension, minimumSurvivors: minimum, colluders: colluders,
                maxUsers: p.maxUsers, clients: cohort.count
            )
            secagg.sumScale = noise.sumScale
            secagg.countScale = noise.countScale
            secagg.clientSigma = noise.clientSigma
        default:
            guard let z = run.privacy.recommendationNoiseMultiplier else { throw CoordinatorError.state("no recommendation phase") }
            let noise = try DistributedIntegerNoise.make(
                noiseMultiplier: z, baseSensitivity: plan.histogramSensitivity, length: plan.secAggWidth,
                minimumSurvivors: minimum, colluders: colluders, clients: cohort.count, maxTotal: p.maxUsers
            )
            secagg.sumScale = Double(noise.scale)
            secagg.countScale = Double(noise.scale)
            secagg.clientSigma = noise.clientSigma
        }
        return secagg
    }
}
