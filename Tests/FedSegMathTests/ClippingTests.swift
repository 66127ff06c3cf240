import FedSegMath
import Testing

@Suite("Clipping")
struct ClippingTests {
    /// ‖v‖ of Floats, in Double.
    func norm(_ v: [Float]) -> Double { v.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot() }

    @Test("property: every clipped Float vector has norm ≤ C exactly, whatever its length, norm and C", arguments: [1, 7, 384, 1024])
    func floatResultWithinBound(dimension: Int) {
        var rng = SeededRandom(seed: UInt64(dimension))
        var above = 0
        for trial in 0..<2000 {
            let clip = Float([0.5, 1, 1.7, 3.3][trial % 4])
            var v = (0..<dimension).map { _ in Float(rng.nextUniform() * 2 - 1) }
            let target = Double(clip) * (1 + rng.nextUniform() * 4)
            let scale = Float(target / max(norm(v), 1e-30))
            v = v.map { $0 * scale }
            let before = norm(v)
            let factor = Clipping.clip(&v, to: clip)
            if norm(v) > Double(clip) { above += 1 }
            #expect(factor <= 1)
            // Clipped to within the margin of C, not below it by more.
            if before > Double(clip) { #expect(norm(v) >= Double(clip) * (1 - 2e-6)) }
        }
        #expect(above == 0, "\(above) of 2000 clipped vectors ended above C")
    }

    @Test("short vectors are left alone")
    func shortUntouched() {
        var v: [Float] = [0.3, 0.4]
        #expect(Clipping.clip(&v, to: 1) == 1)
        #expect(v == [0.3, 0.4])
    }
}
