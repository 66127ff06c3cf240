import FedSegMath
import Foundation
import Testing

@Suite("JSON Lines vectors")
struct VectorLinesTests {
    @Test("parses vectors, skipping blank lines")
    func parses() throws {
        let text = "{\"embedding\": [1, 2.5]}\n\n{\"embedding\": [-3, 4], \"id\": \"x\"}\n"
        let m = try VectorLines.parse(Data(text.utf8))
        #expect(m.rows == 2 && m.cols == 2)
        #expect(m.storage == [1, 2.5, -3, 4])
    }

    @Test(
        "bad lines are errors naming the line",
        arguments: [
            ("{\"embedding\": [1]}\nnot json", VectorLines.Failure.badLine(2, "not valid JSON")),
            ("{\"vector\": [1]}", .badLine(1, "expected an object with an array \"embedding\"")),
            ("{\"embedding\": [1, \"a\"]}", .badLine(1, "\"embedding\" must be an array of finite numbers")),
            ("{\"embedding\": [1, true]}", .badLine(1, "\"embedding\" must be an array of finite numbers")),
            ("{\"embedding\": [1, 2]}\n{\"embedding\": [1]}", .dimensionMismatch(line: 2, expected: 2, found: 1)),
            ("\n\n", .empty),
        ]
    )
    func failures(text: String, expected: VectorLines.Failure) {
        #expect(throws: expected) { try VectorLines.parse(Data(text.utf8)) }
    }
}
