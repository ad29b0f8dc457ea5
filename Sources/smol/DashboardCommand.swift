import ArgumentParser
import Foundation
import SmolDashboard
import SmolRuns

struct DashboardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Serve a web page over the run store: runs, curves, baseline bands, events, evaluations, ablation reports.",
        discussion: """
        The page polls the store every 3 seconds, so curves grow while trainings run. It binds to
        loopback unless --host says otherwise. URL parameters: ?runs=1,2&metric=val_loss&x=steps&smooth=0.8.

        Example:
          smol dashboard --port 8090      # then open http://127.0.0.1:8090/
        """)

    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(help: "Port (0 picks a free one; the chosen port is printed).") var port = 8090
    @Option(help: "Directories holding ablation report folders (repeatable).") var reports: [String] = ["runs/ablations"]
    @OptionGroup var options: StoreOptions

    func run() throws {
        try runReportingErrors {
            guard (0...65535).contains(port) else { throw CLIError(message: "--port must be in 0...65535") }
            let store = try options.open()
            let server = DashboardServer(storePath: store.path, reportRoots: reports)
            _ = try server.makeRouter()   // fail here, not in the event loop, on a bad store
            let host = self.host, port = self.port, path = store.path
            try serveUntilStopped(host: host, port: port) {
                try await server.run(host: host, port: port) { bound in
                    print("smol dashboard on http://\(host):\(bound)/ (store \(path))")
                    fflush(stdout)
                }
            }
        }
    }
}
