import FedSegMath
import Foundation

/// Choosing a run's segments from released values alone, so everything here is post-processing
/// and costs no privacy: weighted points that are either the start histogram's public candidates
/// (K-means centres of the seed phrases, weighted by their noisy counts) or a Lloyd round's
/// released centroids (weighted by their noisy counts). Points are few (at most a few hundred),
/// so all pairwise distances are computed once.
public enum CandidateSegmentation {
    /// The weighted silhouette of one k tried; nil where a segment held under the minimum share.
    public struct Score: Sendable, Equatable {
        public var k: Int
        public var silhouette: Double?
    }

    public struct Choice: Sendable, Equatable {
        public var centroids: Matrix
        public var scores: [Score]
        public var reason: String
    }

    /// Pairwise Euclidean distances between the candidates (n × n, row-major).
    public static func distances(_ points: Matrix) -> [Double] {
        let squared = KMeans.squaredDistances(points, to: points)
        var out = [Double](repeating: 0, count: points.rows * points.rows)
        for i in 0..<points.rows {
            for j in 0..<points.rows where i != j { out[i * points.rows + j] = max(0, squared[i][j]).squareRoot() }
        }
        return out
    }

    /// The silhouette of a labelling with each point standing for `weights[i]` users at its
    /// place: a(i) and b(i) are weighted mean distances (co-located users at distance 0), and the
    /// score is the weighted mean of (b − a)/max(a, b). Points of weight 0 do not count.
    public static func weightedSilhouette(distances: [Double], weights: [Double], labels: [Int], k: Int) -> Double {
        let n = weights.count
        var mass = [Double](repeating: 0, count: k)
        for i in 0..<n { mass[labels[i]] += max(0, weights[i]) }
        var total = 0.0
        var score = 0.0
        var toCluster = [Double](repeating: 0, count: k)
        for i in 0..<n where weights[i] > 0 {
            for c in 0..<k { toCluster[c] = 0 }
            for j in 0..<n where weights[j] > 0 { toCluster[labels[j]] += weights[j] * distances[i * n + j] }
            let own = labels[i]
            let a = toCluster[own] / mass[own]
            var b = Double.infinity
            for c in 0..<k where c != own && mass[c] > 0 { b = min(b, toCluster[c] / mass[c]) }
            let s = b.isFinite && max(a, b) > 0 ? (b - a) / max(a, b) : 0
            score += weights[i] * s
            total += weights[i]
        }
        return total > 0 ? score / total : 0
    }

    /// Distances between the users behind released centroids rather than between the centroids:
    /// a user of segment i lies at squared distance ‖c_i − c_j‖² + v_i + v_j from one of segment j
    /// on average (v = the within-segment variance), and √(2v_i) from another of its own. With
    /// users of norm at most `clipNorm`, v_i ≤ C² − ‖c_i‖², which is what is used: derived from
    /// released values only. Without the spread every centroid alone would look like a perfect
    /// cluster (a(i) = 0), and the silhouette would rise with k.
    ///
    /// Noisy centroids (`variances`: each estimate's variance, summed over coordinates) have
    /// E‖ĉ‖² = ‖c‖² + var, so v_i = C² − ‖ĉ_i‖² + var_i; between two centroids the noise in
    /// E‖ĉ_i − ĉ_j‖² = ‖c_i − c_j‖² + var_i + var_j cancels against it, and only the diagonal,
    /// 2v_i, keeps the variance. Without it noise would make every centroid look tight.
    public static func spreadDistances(_ centroids: Matrix, clipNorm: Double, variances: [Double]? = nil) -> [Double] {
        let n = centroids.rows
        let squared = KMeans.squaredDistances(centroids, to: centroids)
        let norms = centroids.squaredRowNorms()
        let spread = norms.map { clipNorm * clipNorm - Double($0) }
        var out = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            let noise = variances.map { $0[i].isFinite ? max(0, $0[i]) : 0 } ?? 0
            for j in 0..<n {
                out[i * n + j] = i == j
                    ? max(0, 2 * (spread[i] + noise)).squareRoot()
                    : max(0, squared[i][j] + spread[i] + spread[j]).squareRoot()
            }
        }
        return out
    }

    /// Centroids merged into `merged` (each joins the nearest): the sum of their counts, and the
    /// variance of each merged centroid as a count-weighted mean of independent estimates,
    /// Σ w_i² v_i / (Σ w_i)² with w = max(0, count). With `spreads` (each centroid's users' mean
    /// squared distance from it), the merged segments' spreads: Σ w_i (s_i + ‖c_i − c_j‖²) / Σ w_i,
    /// since a merged centroid's users lie at their own spread plus the centroids' distance from it.
    public static func merge(
        _ points: Matrix, counts: [Double], variances: [Double], spreads: [Double]? = nil, into merged: Matrix
    ) -> (counts: [Double], variances: [Double], spreads: [Double]?) {
        let labels = KMeans.assign(points, to: merged).map(Int.init)
        var sums = [Double](repeating: 0, count: merged.rows)
        var mass = [Double](repeating: 0, count: merged.rows)
        var spread = [Double](repeating: 0, count: merged.rows)
        var userSpread = [Double](repeating: 0, count: merged.rows)
        for i in 0..<points.rows {
            let w = max(0, counts[i])
            let j = labels[i]
            sums[j] += counts[i]
            mass[j] += w
            spread[j] += w * w * variances[i]
            if let spreads { userSpread[j] += w * (spreads[i] + StartCandidates.squaredDistance(points, i, merged, j)) }
        }
        let mergedSpreads = spreads.map { old in (0..<merged.rows).map { mass[$0] > 0 ? userSpread[$0] / mass[$0] : old.max() ?? 0 } }
        return (sums, (0..<merged.rows).map { mass[$0] > 0 ? spread[$0] / (mass[$0] * mass[$0]) : .infinity }, mergedSpreads)
    }

    /// K-means with k chosen in 2...maxK: weighted K-means for each k, scored by weighted
    /// silhouette under `distances` (Euclidean between the points when nil); a k whose smallest
    /// segment holds under `minShare` of the weight is not eligible.
    public static func autoK(
        _ points: Matrix, weights: [Double], maxK: Int, minShare: Double, seed: UInt64, distances given: [Double]? = nil
    ) -> Choice {
        let w = weights.map { max(0, $0) }
        let distances = given ?? distances(points)
        let total = w.reduce(0, +)
        let ks = 2...max(2, min(maxK, points.rows))
        var fits: [(k: Int, centroids: Matrix, silhouette: Double, eligible: Bool)] = []
        for k in ks {
            let centroids = WeightedKMeans.fit(points, weights: w, k: k, restarts: 5, seed: seed)
            let labels = KMeans.assign(points, to: centroids).map(Int.init)
            var mass = [Double](repeating: 0, count: k)
            for i in 0..<points.rows { mass[labels[i]] += w[i] }
            let silhouette = weightedSilhouette(distances: distances, weights: w, labels: labels, k: k)
            fits.append((k, centroids, silhouette, (mass.min() ?? 0) >= minShare * total))
        }
        let eligible = fits.filter(\.eligible)
        let best = (eligible.isEmpty ? fits : eligible).max { $0.silhouette < $1.silhouette || ($0.silhouette == $1.silhouette && $0.k > $1.k) }!
        let share = String(format: "%.1f%%", minShare * 100)
        let reason = eligible.isEmpty
            ? "k = \(best.k): the best weighted silhouette (\(String(format: "%.3f", best.silhouette))) of k in \(ks); every k left a segment under \(share) of the weight"
            : "k = \(best.k): the best weighted silhouette (\(String(format: "%.3f", best.silhouette))) among k in \(ks) whose segments all hold at least \(share) of the weight"
        return Choice(
            centroids: WeightedKMeans.fit(points, weights: w, k: best.k, restarts: 20, seed: seed),
            scores: fits.map { Score(k: $0.k, silhouette: $0.eligible ? $0.silhouette : nil) }, reason: reason
        )
    }

    /// DBSCAN on the weighted candidates: a candidate is a core where the weight within ε of it
    /// (its own included) reaches `minShare` of all, over at least `minimumNeighbours` candidates; cores within ε of each other form a region,
    /// candidates within ε of a core join it, the rest are noise. Regions lighter than `minShare`
    /// are dissolved and at most `maxK` (the heaviest) are kept. ε is chosen among quantiles of
    /// the pairwise distances by the weighted silhouette of the regions (noise joins the nearest
    /// region for scoring). nil where no ε finds two regions.
    public static func density(_ points: Matrix, weights: [Double], maxK: Int, minShare: Double) -> Choice? {
        let n = points.rows
        let w = weights.map { max(0, $0) }
        let total = w.reduce(0, +)
        guard n >= 2, total > 0 else { return nil }
        let distances = distances(points)
        var pairs: [Double] = []
        pairs.reserveCapacity(n * (n - 1) / 2)
        for i in 0..<n { for j in (i + 1)..<n { pairs.append(distances[i * n + j]) } }
        pairs.sort()
        let quantiles = stride(from: 0.01, through: 0.30, by: 0.01).map { pairs[min(pairs.count - 1, Int($0 * Double(pairs.count)))] }
        let minMass = max(minShare * total, 1e-9)
        var best: (eps: Double, regions: [[Int]], silhouette: Double)?
        var scores: [Score] = []
        for eps in Set(quantiles).sorted() {
            let regions = dbscan(distances: distances, weights: w, n: n, eps: eps, minMass: minMass, maxRegions: maxK)
            guard regions.count >= 2 else { continue }
            let labels = nearestRegion(distances: distances, n: n, regions: regions)
            let silhouette = weightedSilhouette(distances: distances, weights: w, labels: labels, k: regions.count)
            scores.append(Score(k: regions.count, silhouette: silhouette))
            if best == nil || silhouette > best!.silhouette { best = (eps, regions, silhouette) }
        }
        guard let best else { return nil }
        var centroids = Matrix(rows: best.regions.count, cols: points.cols)
        for (r, members) in best.regions.enumerated() {
            var sum = [Double](repeating: 0, count: points.cols)
            var mass = 0.0
            for i in members {
                mass += w[i]
                for t in 0..<points.cols { sum[t] += w[i] * Double(points[i, t]) }
            }
            centroids.setRow(r, to: sum.map { Float($0 / max(mass, 1e-12)) })
        }
        let covered = best.regions.joined().reduce(0.0) { $0 + w[$1] } / total
        let reason = "density: \(best.regions.count) dense regions of the DP-weighted public candidates (DBSCAN, ε = \(String(format: "%.4f", best.eps)) chosen by weighted silhouette \(String(format: "%.3f", best.silhouette)), a core needs \(String(format: "%.1f%%", minShare * 100)) of the start histogram within ε; the regions hold \(String(format: "%.0f%%", covered * 100)) of it)"
        return Choice(centroids: centroids, scores: scores, reason: reason)
    }

    /// Candidates (with weight, itself included) a core needs within ε, as DBSCAN's minPts: one
    /// heavy candidate alone is not a dense region.
    public static let minimumNeighbours = 3

    /// The regions of one DBSCAN pass, heaviest first.
    static func dbscan(distances: [Double], weights w: [Double], n: Int, eps: Double, minMass: Double, maxRegions: Int) -> [[Int]] {
        var core = [Bool](repeating: false, count: n)
        for i in 0..<n where w[i] > 0 {
            var mass = 0.0
            var neighbours = 0
            for j in 0..<n where distances[i * n + j] <= eps && w[j] > 0 {
                mass += w[j]
                neighbours += 1
            }
            core[i] = mass >= minMass && neighbours >= minimumNeighbours
        }
        var region = [Int](repeating: -1, count: n)
        var regions: [[Int]] = []
        for start in 0..<n where core[start] && region[start] < 0 {
            let id = regions.count
            var members: [Int] = []
            var stack = [start]
            region[start] = id
            while let i = stack.popLast() {
                members.append(i)
                guard core[i] else { continue }
                for j in 0..<n where region[j] < 0 && distances[i * n + j] <= eps {
                    region[j] = id
                    stack.append(j)
                }
            }
            regions.append(members)
        }
        let heavy = regions.map { members in (members, members.reduce(0.0) { $0 + w[$1] }) }
            .filter { $0.1 >= minMass }
            .sorted { $0.1 > $1.1 }
        return heavy.prefix(maxRegions).map { $0.0.sorted() }
    }

    /// Each candidate's region: its own, or for noise the region of its nearest member.
    static func nearestRegion(distances: [Double], n: Int, regions: [[Int]]) -> [Int] {
        var labels = [Int](repeating: -1, count: n)
        for (r, members) in regions.enumerated() { for i in members { labels[i] = r } }
        for i in 0..<n where labels[i] < 0 {
            var nearest = (distance: Double.infinity, region: 0)
            for (r, members) in regions.enumerated() {
                for j in members where distances[i * n + j] < nearest.distance { nearest = (distances[i * n + j], r) }
            }
            labels[i] = nearest.region
        }
        return labels
    }
}
