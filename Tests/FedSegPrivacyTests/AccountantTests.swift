import FedSegPrivacy
import FedSegTestSupport
import Foundation
import Testing

/// Epsilons from Google's dp_accounting 0.6.0 (Tests/Fixtures/accountant_reference.json).
struct AccountantReference: Decodable {
    struct Case: Decodable, CustomTestStringConvertible {
        var noiseMultiplier: Double
        var samplingRate: Double
        var rounds: Int
        var delta: Double
        var epsilonRdp: Double
        var epsilonPld: Double

        var testDescription: String { "z=\(noiseMultiplier) q=\(samplingRate) T=\(rounds) δ=\(delta)" }
    }

    var cases: [Case]

    static let all: [Case] = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return (try? decoder.decode(AccountantReference.self, from: Fixtures.data("accountant_reference.json")).cases) ?? []
    }()
}

@Suite("RDP accountant against dp_accounting")
struct AccountantTests {
    @Test("the fixture has cases")
    func fixtureLoaded() {
        #expect(AccountantReference.all.count == 8)
    }

    @Test("RDP epsilon matches dp_accounting to 1e-6 relative", arguments: AccountantReference.all)
    func matchesReference(reference: AccountantReference.Case) throws {
        let epsilon = try Calibration.epsilon(
            noiseMultiplier: reference.noiseMultiplier, samplingRate: reference.samplingRate,
            rounds: reference.rounds, delta: reference.delta
        )
        let relative = abs(epsilon - reference.epsilonRdp) / reference.epsilonRdp
        #expect(relative < 1e-6, "ε \(epsilon) vs \(reference.epsilonRdp) (relative error \(relative))")
    }

    @Test("heterogeneous composition adds RDP per order")
    func heterogeneousComposition() throws {
        var both = RDPAccountant()
        try both.compose(.poissonSampledGaussian(samplingRate: 0.1, noiseMultiplier: 1.2), count: 30)
        try both.compose(.gaussian(noiseMultiplier: 5), count: 1)
        var first = RDPAccountant()
        try first.compose(.poissonSampledGaussian(samplingRate: 0.1, noiseMultiplier: 1.2), count: 30)
        let second = try RDPAccountant.rdp(of: .gaussian(noiseMultiplier: 5), orders: RDPAccountant.defaultOrders)
        for i in both.rdp.indices {
            let expected = first.rdp[i] + second[i]
            if expected.isInfinite {
                #expect(both.rdp[i] == .infinity)  // high orders can overflow; they then drop out of the minimum
            } else {
                #expect(abs(both.rdp[i] - expected) <= 1e-12 * expected)
            }
        }
        #expect(try both.epsilon(delta: 1e-6).epsilon > first.epsilon(delta: 1e-6).epsilon)
    }

    @Test("ε never decreases as releases are added")
    func monotone() throws {
        var accountant = RDPAccountant()
        var last = 0.0
        for round in 1...40 {
            try accountant.compose(.poissonSampledGaussian(samplingRate: 0.05 * Double(1 + round % 3), noiseMultiplier: 0.8 + Double(round % 5) * 0.3))
            let epsilon = try accountant.epsilon(delta: 1e-6).epsilon
            #expect(epsilon >= last)
            last = epsilon
        }
    }

    @Test("degenerate parameters: no sampling costs nothing, no noise costs everything, bad inputs are errors")
    func degenerate() throws {
        #expect(try Calibration.epsilon(noiseMultiplier: 1, samplingRate: 0, rounds: 10, delta: 1e-5) == 0)
        #expect(try Calibration.epsilon(noiseMultiplier: 0, samplingRate: 1, rounds: 1, delta: 1e-5) == .infinity)
        var accountant = RDPAccountant()
        #expect(throws: RDPAccountant.Failure.self) { try accountant.compose(.poissonSampledGaussian(samplingRate: 1.5, noiseMultiplier: 1)) }
        #expect(throws: RDPAccountant.Failure.self) { try accountant.compose(.gaussian(noiseMultiplier: -1)) }
        #expect(throws: RDPAccountant.Failure.self) { try accountant.epsilon(delta: -1) }
    }

    @Test("calibration returns the smallest multiplier that meets the target", arguments: [
        (1.0, 1e-6, 10, 1.0), (8.0, 1e-6, 20, 1.0), (2.0, 1e-5, 100, 0.05),
    ])
    func calibration(target: Double, delta: Double, rounds: Int, q: Double) throws {
        let z = try Calibration.noiseMultiplier(epsilon: target, delta: delta, rounds: rounds, samplingRate: q)
        let achieved = try Calibration.epsilon(noiseMultiplier: z, samplingRate: q, rounds: rounds, delta: delta)
        #expect(achieved <= target)
        let slightlyLess = try Calibration.epsilon(noiseMultiplier: z * 0.999, samplingRate: q, rounds: rounds, delta: delta)
        #expect(slightlyLess > target)
    }
}
