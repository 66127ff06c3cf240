import FedSegMath
import FedSegNode
import Foundation

/// How a simulation deals users to clients.
public enum Partition: Sendable, Equatable, CustomStringConvertible {
    /// By a keyed hash of the user id: every client sees the same distribution.
    case iid
    /// Per ground-truth segment (or hash group when the data has none), client shares drawn from
    /// Dirichlet(α): small α gives clients few segments each.
    case dirichlet(Double)
    /// Client sizes proportional to these weights (repeated cyclically over the clients).
    case shards([Double])

    public init(parsing text: String) throws {
        if text == "iid" {
            self = .iid
        } else if text.hasPrefix("dirichlet:"), let alpha = Double(text.dropFirst("dirichlet:".count)), alpha > 0, alpha.isFinite {
            self = .dirichlet(alpha)
        } else if text.hasPrefix("shards:") {
            let sizes = text.dropFirst("shards:".count).split(separator: ",").compactMap { Double($0) }
            guard !sizes.isEmpty, sizes.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                throw SimulationError.invalid("--partition shards:SIZES needs positive comma-separated sizes")
            }
            self = .shards(sizes)
        } else {
            throw SimulationError.invalid("--partition must be iid, dirichlet:ALPHA or shards:SIZES")
        }
    }

    public var description: String {
        switch self {
        case .iid: "iid"
        case .dirichlet(let alpha): "dirichlet:\(alpha)"
        case .shards(let sizes): "shards:" + sizes.map { String($0) }.joined(separator: ",")
        }
    }

    /// The client index of each listed user.
    public func assign(users: [Int], dataset: Dataset, clients: Int, seed: UInt64) -> [Int] {
        let hasher = KeyedHash(seed: seed)
        switch self {
        case .iid:
            return users.map { Int(hasher.hash(dataset.users[$0].user) % UInt64(clients)) }
        case .shards(let sizes):
            let weights = (0..<clients).map { sizes[$0 % sizes.count] }
            let total = weights.reduce(0, +)
            var cumulative: [Double] = []
            var running = 0.0
            for w in weights {
                running += w / total
                cumulative.append(running)
            }
            return users.map { u in
                let x = Double(hasher.hash(dataset.users[u].user) >> 11) / Double(1 << 53)
                return min(clients - 1, cumulative.firstIndex { x < $0 } ?? clients - 1)
            }
        case .dirichlet(let alpha):
            var rng = SeededRandom(seed: seed, stream: 0xD1)
            var shares: [String: [Double]] = [:]
            return users.map { u in
                let group = dataset.users[u].segment ?? String(hasher.hash(dataset.users[u].user) % 8)
                if shares[group] == nil {
                    let draws = (0..<clients).map { _ in Self.gamma(alpha, using: &rng) }
                    let total = max(draws.reduce(0, +), .leastNonzeroMagnitude)
                    var running = 0.0
                    shares[group] = draws.map { running += $0 / total; return running }
                }
                let x = rng.nextUniform()
                return min(clients - 1, shares[group]!.firstIndex { x < $0 } ?? clients - 1)
            }
        }
    }

    /// Gamma(α, 1) by Marsaglia and Tsang (α < 1 boosted: Gamma(α + 1)·U^(1/α)).
    static func gamma(_ alpha: Double, using rng: inout SeededRandom) -> Double {
        if alpha < 1 { return gamma(alpha + 1, using: &rng) * pow(rng.nextUniformPositive(), 1 / alpha) }
        let d = alpha - 1.0 / 3
        let c = 1 / (9 * d).squareRoot()
        while true {
            let x = rng.nextStandardNormal()
            let v = pow(1 + c * x, 3)
            guard v > 0 else { continue }
            let u = rng.nextUniformPositive()
            if log(u) < 0.5 * x * x + d - d * v + d * log(v) { return d * v }
        }
    }
}

/// Adversarial behaviour of some simulated clients, to show the coordinator refuses it.
public enum Misbehaviour: Sendable, Equatable, CustomStringConvertible {
    /// Sends its accepted update a second time.
    case replay
    /// Sends a copy with one ciphertext byte flipped.
    case tamper
    /// Sends a body over the coordinator's limit.
    case oversize
    /// Sends an update holding NaN.
    case nan
    /// This fraction of extra clients, never enrolled, send updates.
    case unenrolled(Double)

    public init(parsing text: String) throws {
        switch text {
        case "replay": self = .replay
        case "tamper": self = .tamper
        case "oversize": self = .oversize
        case "nan": self = .nan
        default:
            guard text.hasPrefix("unenrolled:"), let p = Double(text.dropFirst("unenrolled:".count)), p > 0, p <= 1 else {
                throw SimulationError.invalid("--misbehave must be replay, tamper, oversize, nan or unenrolled:P")
            }
            self = .unenrolled(p)
        }
    }

    public var description: String {
        switch self {
        case .replay: "replay"
        case .tamper: "tamper"
        case .oversize: "oversize"
        case .nan: "nan"
        case .unenrolled(let p): "unenrolled:\(p)"
        }
    }
}

public enum SimulationError: Error, CustomStringConvertible {
    case invalid(String)
    case runFailed(String)

    public var description: String {
        switch self {
        case .invalid(let why): why
        case .runFailed(let why): "run failed: \(why)"
        }
    }
}
