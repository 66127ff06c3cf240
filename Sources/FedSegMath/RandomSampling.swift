extension RandomNumberGenerator {
    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUniform() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Uniform in (0, 1]: safe to take the logarithm of.
    public mutating func nextUniformPositive() -> Double {
        Double((next() >> 11) + 1) * 0x1.0p-53
    }

    /// A standard normal draw (Box–Muller). For simulation data; privacy noise uses the
    /// samplers in FedSegPrivacy.
    public mutating func nextStandardNormal() -> Double {
        let u1 = nextUniformPositive()
        let u2 = nextUniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    /// Fills a matrix with independent standard normal values.
    public mutating func normalMatrix(rows: Int, cols: Int) -> Matrix {
        var m = Matrix(rows: rows, cols: cols)
        for i in 0..<m.count { m.storage[i] = Float(nextStandardNormal()) }
        return m
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
