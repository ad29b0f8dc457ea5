import ArgumentParser
import Foundation

@main
struct Smol: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smol",
        abstract: "SmolTrain: train small language models end to end, following the Smol Training Playbook.",
        discussion: """
        Start with the bundled demo (scripts/demo.sh runs these):
          smol tokenizer train data/corpus/*.txt --vocab-size 2048 --special '<|endoftext|>' --out data/shards/tokenizer.json
          smol data prepare data/corpus/prose.txt --tokenizer data/shards/tokenizer.json --out data/shards --name prose
          smol data prepare data/corpus/code.txt --delimiter '<|endoftext|>' --tokenizer data/shards/tokenizer.json --out data/shards --name code
          smol train configs/demo.yaml
        Then look at it: smol runs list, smol dashboard, smol eval runs/demo --tasks tasks/.
        """,
        subcommands: [TrainCommand.self, SampleCommand.self, DataCommand.self, ParamsCommand.self, PlanCommand.self, PreflightCommand.self, TokenizerCommand.self, GenerateCommand.self, ChatCommand.self, ExportCommand.self, MergeCommand.self, TemplateCommand.self, EvalCommand.self, AuditCommand.self, LeaderboardCommand.self, ServeCommand.self, JudgeCommand.self, RunsCommand.self, CompareCommand.self, AblateCommand.self, DashboardCommand.self,
                      BenchCommand.self, DevCommand.self])
}

/// Errors from the libraries reach the user as one line naming the file or key, exit code 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ error: Error) { description = "\(error)" }
    init(message: String) { description = message }
}

func runReportingErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() }
    catch let e as ExitCode { throw e }
    catch let e as CleanExit { throw e }
    catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

func printJSON<T: Encodable>(_ value: T) {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    if let data = try? enc.encode(value) { print(String(decoding: data, as: UTF8.self)) }
}

var stderrIsTerminal: Bool { isatty(STDERR_FILENO) != 0 }

func formatDuration(_ s: Double) -> String {
    guard s.isFinite, s >= 0 else { return "?" }
    let t = Int(s.rounded())
    if t >= 3600 { return String(format: "%dh%02dm", t / 3600, (t % 3600) / 60) }
    if t >= 60 { return String(format: "%dm%02ds", t / 60, t % 60) }
    return "\(t)s"
}

/// Peak resident memory of this process (VmHWM), in bytes.
func peakResidentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kb * 1024
    }
    return 0
}

/// Runs an async server from a synchronous command until it stops; its start-up error becomes a
/// CLI error naming the address.
func serveUntilStopped(host: String, port: Int, _ body: @escaping @Sendable () async throws -> Void) throws {
    final class Failure: @unchecked Sendable { var error: Error? }
    let done = DispatchSemaphore(value: 0)
    let failure = Failure()
    Task.detached {
        do { try await body() } catch { failure.error = error }
        done.signal()
    }
    done.wait()
    if let e = failure.error { throw CLIError(message: "cannot serve on \(host):\(port): \(e)") }
}

/// Table cells: `s` padded with spaces to `width` characters (text left-aligned, numbers right-aligned).
func padRight(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
func padLeft(_ s: String, _ width: Int) -> String { s.count >= width ? s : String(repeating: " ", count: width - s.count) + s }
