/// e^x in plain Float arithmetic (Cephes' expf: x = n·ln 2 + r with ln 2 split in two, a degree-5
/// polynomial for e^r, 2^n put into the exponent bits), so that a loop over a row compiles to
/// vector instructions instead of a libm call per element.
///
/// Measured: softmax with libm's `expf` was 12% of the encoder's CPU on an Intel Xeon and 3% on
/// an AMD EPYC; over a row this runs 3x faster than a libm call per element. Within 1 ulp of
/// libm over the range softmax uses (a test bounds it at 2); inputs below −87.3 give
/// e^−87.3 ≈ 1.2e-38 instead of a subnormal or zero, which no softmax sum can tell from zero.
enum VectorExp {
    @inline(__always)
    static func exp(_ value: Float) -> Float {
        // Selects, not min/max or a checked Float → Int conversion: either would keep the loop scalar.
        let low: Float = -87.3
        let high: Float = 88.3
        var x = value < low ? low : value
        x = x > high ? high : x
        // n = round(x / ln 2) by the 1.5·2^23 trick: the sum's low mantissa bits hold n.
        let shifter: Float = 12_582_912
        let shifted = x * 1.44269504088896341 + shifter
        let n = shifted - shifter
        var r = x - n * 0.693359375
        r -= n * -2.12194440e-4
        var p: Float = 1.9875691500e-4
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let er = p * (r * r) + r + 1
        let scale = Float(bitPattern: (shifted.bitPattern &- 0x4B40_0000 &+ 127) << 23)
        return er * scale
    }
}
