import ArgumentParser
import FedSegCommandLine
import Foundation
import Logging
import Synchronization
import Testing

@Suite("JSON log lines")
struct LogOutputTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
    }

    @Test("one JSON object per line with time, level, label, message and metadata; the level filters")
    func jsonLines() throws {
        let captured = Lines()
        var handler = JSONLogHandler(label: "fedseg.test", write: { captured.append($0) })
        handler.logLevel = .notice
        handler[metadataKey: "node"] = "n1"
        var logger = Logger(label: "fedseg.test") { _ in handler }
        logger.logLevel = .notice
        logger.info("not shown: below the level")
        logger.notice("round open", metadata: ["round": "3", "quote": "say \"hi\"\nbye", "list": .array(["a", "b"])])
        let lines = captured.lines.withLock { $0 }
        try #require(lines.count == 1)
        #expect(lines[0].hasSuffix("}\n") && lines[0].filter { $0 == "\n" }.count == 1, "one line, even with a newline in a value")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(object["level"] as? String == "notice")
        #expect(object["label"] as? String == "fedseg.test")
        #expect(object["message"] as? String == "round open")
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["round"] as? String == "3")
        #expect(metadata["node"] as? String == "n1")
        #expect(metadata["quote"] as? String == "say \"hi\"\nbye")
        #expect(metadata["list"] as? [String] == ["a", "b"])
        let time = try #require(object["time"] as? String)
        #expect(try Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(time).timeIntervalSinceNow.magnitude < 60)
    }

    @Test("--log-format takes text or json only")
    func formats() {
        #expect(LogFormat(argument: "json") == .json)
        #expect(LogFormat(argument: "text") == .text)
        #expect(LogFormat(argument: "yaml") == nil)
    }
}
