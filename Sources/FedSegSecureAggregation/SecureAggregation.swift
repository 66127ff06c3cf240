import FedSegCrypto
import FedSegMath
import Foundation

/// SecAgg+ (Bonawitz et al. 2017, with the sparse graph of Bell et al. 2020) over Z_{2^32}.
///
/// Each client masks its vector with a self mask (seed b_u) and, for every neighbour v in the
/// public graph, the pairwise mask PRG(s_uv) (added by the smaller index, subtracted by the
/// larger), where s_uv comes from an X25519 agreement of per-round masking keys. It Shamir-shares
/// b_u and its masking key seed with its neighbours (threshold t, shares encrypted to each
/// neighbour, the server only routes them). The server adds masked vectors into one running sum
/// as they arrive — it never receives an unmasked vector — then, for each client that sent its
/// vector, rebuilds b_u from t shares and subtracts its self mask; for each client that shared
/// keys but dropped before sending, rebuilds its masking key and removes the pairwise masks its
/// surviving neighbours added. A neighbour reveals, for any one client, either the b-share or the
/// key share, never both. Too few survivors, or any secret with fewer than t shares: the round
/// aborts and the sum is never formed.
///
/// Threat model (docs/PROTOCOL.md, "Threat model"): t > degree/2, so no server can collect both
/// secrets of a client from neighbours that each reveal once; the consistency stage
/// (`ClientNode`) makes every revealing client check that at least t of its neighbours signed the
/// survivor set it was shown; advertised keys are signed with enrolled identity keys.
public enum SecAgg {
    public struct Parameters: Sendable, Equatable {
        public var clients: Int
        public var length: Int
        public var round: UInt64
        public var graphSeed: UInt64
        public var degree: Int
        /// Shares needed to rebuild a client's secret.
        public var threshold: Int
        /// Fewer clients than this sending their vector aborts the round.
        public var minimumSurvivors: Int

        /// Degree 4⌈log₂ n⌉ + 4 and threshold ⌊degree/2⌋ + 1 (more than half the neighbours):
        /// a secret is lost only when half of a client's neighbours drop.
        public init(clients: Int, length: Int, round: UInt64, graphSeed: UInt64, minimumSurvivors: Int? = nil) {
            self.clients = clients
            self.length = length
            self.round = round
            self.graphSeed = graphSeed
            let log = clients > 1 ? Int(ceil(log2(Double(clients)))) : 0
            degree = min(clients - 1, 4 * log + 4)
            threshold = degree / 2 + 1
            self.minimumSurvivors = minimumSurvivors ?? max(1, clients / 2)
        }
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case tooFewSurvivors(survivors: Int, minimum: Int)
        case secretLost(client: Int, shares: Int, threshold: Int)
        case badMessage(String)
        case askedForBoth(client: Int)

        public var description: String {
            switch self {
            case .tooFewSurvivors(let s, let m): "only \(s) clients sent their masked vector, \(m) needed: round aborted, nothing released"
            case .secretLost(let c, let s, let t): "client \(c)'s secret has \(s) of \(t) shares: round aborted, nothing released"
            case .badMessage(let why): "malformed secure-aggregation message: \(why)"
            case .askedForBoth(let c): "asked for both secrets of client \(c): refused"
            }
        }
    }

    /// Round 0: the keys a client advertises (public, signed in a real deployment by its identity key).
    public struct Advertisement: Sendable {
        public var client: Int
        public var encryptionKey: KeyAgreement.PublicKey
        public var maskingKey: KeyAgreement.PublicKey

        public init(client: Int, encryptionKey: KeyAgreement.PublicKey, maskingKey: KeyAgreement.PublicKey) {
            self.client = client
            self.encryptionKey = encryptionKey
            self.maskingKey = maskingKey
        }
    }

    /// Round 1: a share for one neighbour, sealed to it; the server routes it unread.
    public struct SealedShare: Sendable {
        public var from: Int
        public var to: Int
        public var envelope: [UInt8]

        public init(from: Int, to: Int, envelope: [UInt8]) {
            self.from = from
            self.to = to
            self.envelope = envelope
        }
    }

    /// Round 3: what a surviving neighbour reveals about one client.
    public struct Reveal: Sendable {
        public enum Kind: UInt8, Sendable { case selfMaskSeed = 1, maskingKeySeed = 2 }
        public var about: Int
        public var kind: Kind
        public var share: Shamir.Share

        public init(about: Int, kind: Kind, share: Shamir.Share) {
            self.about = about
            self.kind = kind
            self.share = share
        }
    }

    static let shareKind: UInt8 = 4
}

/// One client's side of one secure-aggregation round.
public final class SecAggClient: @unchecked Sendable {
    public let index: Int
    public let parameters: SecAgg.Parameters
    public let neighbors: [Int]
    let encryptionKey: KeyAgreement.PrivateKey
    let maskingSeed: SecureBytes
    let maskingKey: KeyAgreement.PrivateKey
    let selfMaskSeed: SecureBytes
    /// Shares held for neighbours: their b-share and key-share, by neighbour index.
    var held: [Int: (selfMask: Shamir.Share, maskingKey: Shamir.Share)] = [:]
    var sharedWith: Set<Int> = []
    var revealed: [Int: SecAgg.Reveal.Kind] = [:]

    public init(index: Int, parameters: SecAgg.Parameters, graph: NeighborGraph) throws {
        self.index = index
        self.parameters = parameters
        self.neighbors = graph.neighbors[index]
        guard neighbors.count <= 254 else { throw SecAgg.Failure.badMessage("degree over 254") }
        encryptionKey = KeyAgreement.PrivateKey()
        maskingSeed = SecureBytes.random(count: 32)
        maskingKey = try KeyAgreement.PrivateKey(seed: maskingSeed)
        selfMaskSeed = SecureBytes.random(count: 32)
    }

    public func advertise() -> SecAgg.Advertisement {
        .init(client: index, encryptionKey: encryptionKey.publicKey, maskingKey: maskingKey.publicKey)
    }

    /// x-coordinate of neighbour `v` in this client's sharing (its position in the neighbour list, from 1).
    func coordinate(of v: Int, in list: [Int]) -> UInt8? { list.firstIndex(of: v).map { UInt8($0 + 1) } }

    /// Round 1: shares of both seeds for every advertised neighbour, each sealed to that neighbour.
    public func shareKeys(_ directory: [Int: SecAgg.Advertisement]) throws -> [SecAgg.SealedShare] {
        let present = neighbors.filter { directory[$0] != nil }
        let xs = present.map { coordinate(of: $0, in: neighbors)! }
        let selfShares = try selfMaskSeed.withUnsafeBytes { try Shamir.split(Array($0), threshold: parameters.threshold, at: xs) }
        let keyShares = try maskingSeed.withUnsafeBytes { try Shamir.split(Array($0), threshold: parameters.threshold, at: xs) }
        return try present.enumerated().map { position, v in
            var payload = [UInt8]()
            payload.append(xs[position])
            payload += selfShares[position].bytes
            payload += keyShares[position].bytes
            let envelope = try Envelope.seal(
                payload, header: .init(kind: SecAgg.shareKind, round: parameters.round, clientID: "\(index)"), sender: encryptionKey,
                recipient: directory[v]!.encryptionKey
            )
            return SecAgg.SealedShare(from: index, to: v, envelope: envelope)
        }
    }

    /// Round 2: opens the shares addressed to it, then masks `input`: self mask plus a pairwise
    /// mask with every neighbour that shared keys.
    public func maskedInput(
        _ input: [UInt32], shares: [SecAgg.SealedShare], directory: [Int: SecAgg.Advertisement]
    ) throws -> [UInt32] {
        guard input.count == parameters.length else { throw SecAgg.Failure.badMessage("input of \(input.count) words, expected \(parameters.length)") }
        for share in shares where share.to == index {
            guard let sender = directory[share.from], neighbors.contains(share.from) else { throw SecAgg.Failure.badMessage("share from a non-neighbour") }
            let opened = try Envelope.open(share.envelope, recipient: encryptionKey, senderPublicKey: sender.encryptionKey)
            guard opened.header.kind == SecAgg.shareKind, opened.header.round == parameters.round, opened.header.clientID == "\(share.from)",
                opened.plaintext.count == 65
            else { throw SecAgg.Failure.badMessage("share header") }
            let x = opened.plaintext[0]
            held[share.from] = (Shamir.Share(x: x, bytes: Array(opened.plaintext[1..<33])), Shamir.Share(x: x, bytes: Array(opened.plaintext[33..<65])))
            sharedWith.insert(share.from)
        }
        var masked = input
        MaskExpansion.apply(seed: selfMaskSeed, round: parameters.round, purpose: .selfMask, sign: 1, to: &masked)
        for v in neighbors where sharedWith.contains(v) {
            guard let peer = directory[v], let seed = maskingKey.sharedKey(with: peer.maskingKey) else {
                throw SecAgg.Failure.badMessage("no pairwise key with \(v)")
            }
            MaskExpansion.apply(seed: seed, round: parameters.round, purpose: .pairwise, sign: index < v ? 1 : -1, to: &masked)
        }
        return masked
    }

    /// Round 3: for each neighbour whose shares it holds, the b-share if the neighbour sent its
    /// vector, the key share if it did not; never both for the same neighbour.
    public func unmask(survivors: Set<Int>) throws -> [SecAgg.Reveal] {
        try held.keys.sorted().map { v in
            let kind: SecAgg.Reveal.Kind = survivors.contains(v) ? .selfMaskSeed : .maskingKeySeed
            if let earlier = revealed[v], earlier != kind { throw SecAgg.Failure.askedForBoth(client: v) }
            revealed[v] = kind
            let pair = held[v]!
            return SecAgg.Reveal(about: v, kind: kind, share: kind == .selfMaskSeed ? pair.selfMask : pair.maskingKey)
        }
    }
}

/// The server's side: routes shares, keeps one running sum of masked vectors, and unmasks the sum.
public struct SecAggServer: Sendable {
    public let parameters: SecAgg.Parameters
    public private(set) var directory: [Int: SecAgg.Advertisement] = [:]
    public private(set) var shared: Set<Int> = []
    public private(set) var survivors: Set<Int> = []
    /// Σ masked vectors, mod 2^32: the only aggregate state; individual vectors are not kept.
    var runningSum: [UInt32]

    public init(parameters: SecAgg.Parameters) {
        self.parameters = parameters
        runningSum = [UInt32](repeating: 0, count: parameters.length)
    }

    public mutating func receive(_ advertisement: SecAgg.Advertisement) { directory[advertisement.client] = advertisement }

    /// Routes sealed shares to their recipients (the server cannot open them).
    public mutating func route(_ shares: [[SecAgg.SealedShare]]) -> [Int: [SecAgg.SealedShare]] {
        var inbox: [Int: [SecAgg.SealedShare]] = [:]
        for batch in shares {
            guard let first = batch.first else { continue }
            shared.insert(first.from)
            for share in batch { inbox[share.to, default: []].append(share) }
        }
        return inbox
    }

    /// Adds one client's masked vector to the running sum; the vector itself is not stored.
    public mutating func receiveMasked(from client: Int, _ masked: [UInt32]) throws {
        guard masked.count == parameters.length else { throw SecAgg.Failure.badMessage("masked vector of \(masked.count) words") }
        guard shared.contains(client), !survivors.contains(client) else { throw SecAgg.Failure.badMessage("unexpected vector from \(client)") }
        survivors.insert(client)
        runningSum.withUnsafeMutableBufferPointer { sum in
            masked.withUnsafeBufferPointer { m in for i in 0..<m.count { sum[i] &+= m[i] } }
        }
    }

    /// The set every survivor is told, to decide which share to reveal.
    public func survivorsToAnnounce() throws -> Set<Int> {
        guard survivors.count >= parameters.minimumSurvivors else {
            throw SecAgg.Failure.tooFewSurvivors(survivors: survivors.count, minimum: parameters.minimumSurvivors)
        }
        return survivors
    }

    /// Removes every mask and returns Σ inputs of the survivors mod 2^32, or aborts.
    public func unmask(_ reveals: [SecAgg.Reveal], graph: NeighborGraph) throws -> [UInt32] {
        guard survivors.count >= parameters.minimumSurvivors else {
            throw SecAgg.Failure.tooFewSurvivors(survivors: survivors.count, minimum: parameters.minimumSurvivors)
        }
        var selfShares: [Int: [Shamir.Share]] = [:]
        var keyShares: [Int: [Shamir.Share]] = [:]
        for reveal in reveals {
            switch reveal.kind {
            case .selfMaskSeed: selfShares[reveal.about, default: []].append(reveal.share)
            case .maskingKeySeed: keyShares[reveal.about, default: []].append(reveal.share)
            }
        }
        var sum = runningSum
        for u in survivors.sorted() {
            let shares = selfShares[u] ?? []
            guard shares.count >= parameters.threshold else {
                throw SecAgg.Failure.secretLost(client: u, shares: shares.count, threshold: parameters.threshold)
            }
            let seed = SecureBytes(copying: try Shamir.combine(shares, threshold: parameters.threshold))
            MaskExpansion.apply(seed: seed, round: parameters.round, purpose: .selfMask, sign: -1, to: &sum)
        }
        for v in shared.subtracting(survivors).sorted() {
            let shares = keyShares[v] ?? []
            guard shares.count >= parameters.threshold else {
                throw SecAgg.Failure.secretLost(client: v, shares: shares.count, threshold: parameters.threshold)
            }
            let seed = SecureBytes(copying: try Shamir.combine(shares, threshold: parameters.threshold))
            let key = try KeyAgreement.PrivateKey(seed: seed)
            guard key.publicKey == directory[v]?.maskingKey else { throw SecAgg.Failure.badMessage("rebuilt key of \(v) does not match its advertisement") }
            for u in graph.neighbors[v] where survivors.contains(u) {
                guard let peer = directory[u], let pairwise = key.sharedKey(with: peer.maskingKey) else { continue }
                // u added +PRG when u < v and −PRG otherwise; take it back.
                MaskExpansion.apply(seed: pairwise, round: parameters.round, purpose: .pairwise, sign: u < v ? -1 : 1, to: &sum)
            }
        }
        return sum
    }
}
