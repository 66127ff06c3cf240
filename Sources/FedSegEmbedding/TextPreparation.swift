import Foundation

/// Cleaning user text before it is embedded or used for profiles: Unicode compatibility
/// normalisation (NFKC), control and format characters removed, zero-width and odd spaces turned
/// into plain spaces, runs of whitespace collapsed, ends trimmed, and a length cap.
///
/// This is separate from the model's tokenizer, which reproduces Hugging Face exactly on whatever
/// text it is given.
public struct TextPreparation: Sendable {
    /// Longest text kept, in Unicode scalars; the model reads at most 256 tokens anyway.
    public var maximumScalars: Int

    public init(maximumScalars: Int = 4096) {
        self.maximumScalars = maximumScalars
    }

    public func prepare(_ text: String) -> String {
        let normalized = text.precomposedStringWithCompatibilityMapping
        var output = String.UnicodeScalarView()
        var pendingSpace = false
        var count = 0
        for scalar in normalized.unicodeScalars {
            if count >= maximumScalars { break }
            let category = scalar.properties.generalCategory
            if scalar.properties.isWhitespace || category == .spaceSeparator || scalar == "\u{200B}" {
                pendingSpace = !output.isEmpty
                continue
            }
            switch category {
            case .control, .format, .surrogate, .privateUse, .unassigned: continue
            default: break
            }
            if scalar == "\u{FFFD}" { continue }
            if pendingSpace {
                output.append(" ")
                count += 1
                pendingSpace = false
            }
            output.append(scalar)
            count += 1
        }
        return String(output)
    }
}
