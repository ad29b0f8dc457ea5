import Foundation
import Hummingbird
import Logging
import NIOCore
import SmolRuns

/// `smol dashboard`: one page over the run store, served by Hummingbird. The page reads a small
/// JSON API and polls it, so curves grow while trainings run.
///
///     GET /                                  the page
///     GET /api/runs                          every run
///     GET /api/runs/ID                       one run: record, metric names, events, evaluations
///     GET /api/runs/ID/series?metric=NAME[&from=STEP&to=STEP&points=2000]
///                                            one metric: every point, or min/mean/max buckets when
///                                            the range holds more than `points` (SeriesView)
///     GET /api/runs/ID/series?metric=NAME&format=csv   the raw series, every point
///     GET /api/ablations                     ablation reports (report.json) found under the report roots
public struct DashboardServer: Sendable {
    public let storePath: String
    public let reportRoots: [String]

    public init(storePath: String, reportRoots: [String]) {
        self.storePath = storePath; self.reportRoots = reportRoots
    }

    public func run(host: String, port: Int, onReady: @escaping @Sendable (Int) -> Void) async throws {
        let app = Application(router: try makeRouter(), configuration: .init(address: .hostname(host, port: port), serverName: "smol-dashboard"),
                              onServerRunning: { channel in onReady(channel.localAddress?.port ?? port) },
                              logger: { var l = Logger(label: "smol.dashboard"); l.logLevel = .warning; return l }())
        try await app.runService()
    }

    struct Failure: HTTPResponseError {
        var status: HTTPResponse.Status
        var message: String
        func response(from request: Request, context: some RequestContext) throws -> Response {
            try json(["error": message], status: status)
        }
    }

    /// Every error, the router's 404 included, as {"error": "..."} with a 4xx/5xx status.
    struct JSONErrors<Context: RequestContext>: RouterMiddleware {
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            do { return try await next(request, context) }
            catch let e as Failure { throw e }
            catch let e as HTTPError { throw Failure(status: e.status, message: e.body ?? "no route \(request.method) \(request.uri.path)") }
            catch { throw Failure(status: .internalServerError, message: "\(error)") }
        }
    }

    public func makeRouter() throws -> Router<BasicRequestContext> {
        let store = try RunStore(path: storePath)
        let roots = reportRoots
        let cache = SeriesCache()
        let router = Router()
        router.add(middleware: JSONErrors())
        router.get("/") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: DashboardPage.html)))
        }
        router.get("/api/runs") { _, _ -> Response in try json(try store.runs()) }
        router.get("/api/runs/:id") { _, context -> Response in
            let run = try DashboardServer.run(store, context)
            struct Out: Encodable { var run: RunRecord; var metrics: [String]; var events: [RunEvent]; var evals: [RunStore.EvalRow] }
            return try json(Out(run: run, metrics: try store.metricNames(run: run.id), events: try store.events(run: run.id),
                                evals: try store.evalResults(run: run.id)))
        }
        router.get("/api/runs/:id/series") { request, context -> Response in
            let run = try DashboardServer.run(store, context)
            let q = request.uri.queryParameters
            guard let metric = q.get("metric"), !metric.isEmpty else {
                throw Failure(status: .badRequest, message: "give ?metric=NAME")
            }
            func integer(_ key: String) throws -> Int? {
                guard let raw = q.get(key) else { return nil }
                guard let v = Int(raw), abs(v) < 1 << 53 else { throw Failure(status: .badRequest, message: "\(key) must be an integer, got '\(raw)'") }
                return v
            }
            let from = try integer("from"), to = try integer("to")
            if let a = from, let b = to, a > b { throw Failure(status: .badRequest, message: "from (\(a)) is after to (\(b))") }
            let points = try integer("points") ?? 2000
            guard (2...100_000).contains(points) else { throw Failure(status: .badRequest, message: "points must be in 2...100000") }
            switch q.get("format") ?? "json" {
            case "json":
                let view = try cache.view(.init(run: run.id, metric: metric, from: from, to: to, points: points), run: run) {
                    try store.seriesView(run: run.id, metric: metric, from: from, to: to, maxPoints: points)
                }
                guard view.total > 0 || from != nil || to != nil else { throw Failure(status: .notFound, message: "run \(run.id) has no metric '\(metric)'") }
                return try json(view)
            case "csv":
                let csv = try store.seriesCSV(run: run.id, metric: metric, from: from, to: to)
                guard csv.utf8.count > RunStore.seriesCSVHeader.utf8.count || from != nil || to != nil else { throw Failure(status: .notFound, message: "run \(run.id) has no metric '\(metric)'") }
                let name = "run\(run.id)-\(metric.replacingOccurrences(of: "/", with: "_")).csv"
                return Response(status: .ok, headers: [.contentType: "text/csv", .contentDisposition: "attachment; filename=\"\(name)\""],
                                body: .init(byteBuffer: ByteBuffer(string: csv)))
            case let f: throw Failure(status: .badRequest, message: "format must be json or csv, got '\(f)'")
            }
        }
        router.get("/api/ablations") { _, _ -> Response in
            var reports: [[String: String]] = []
            for root in roots {
                let dirs = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
                for d in dirs {
                    let dir = (root as NSString).appendingPathComponent(d)
                    let json = (dir as NSString).appendingPathComponent("report.json"), md = (dir as NSString).appendingPathComponent("report.md")
                    if let j = try? String(contentsOfFile: json, encoding: .utf8) {
                        let plots = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".svg") }.sorted()
                        reports.append(["name": d, "json": j, "markdown": (try? String(contentsOfFile: md, encoding: .utf8)) ?? "",
                                        "plots": plots.joined(separator: "\n")])
                    }
                }
            }
            return try json(reports)
        }
        router.get("/api/ablations/:name/:file") { _, context -> Response in
            // Plain names only: no way out of the report roots.
            guard let name = context.parameters.get("name"), let file = context.parameters.get("file"),
                  !name.contains(".."), !file.contains(".."), file.hasSuffix(".svg") else {
                throw Failure(status: .badRequest, message: "ask for REPORT/PLOT.svg")
            }
            for root in roots {
                let path = ((root as NSString).appendingPathComponent(name) as NSString).appendingPathComponent(file)
                if let data = FileManager.default.contents(atPath: path) {
                    return Response(status: .ok, headers: [.contentType: "image/svg+xml"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
                }
            }
            throw Failure(status: .notFound, message: "no plot \(name)/\(file)")
        }
        return router
    }

    static func run(_ store: RunStore, _ context: BasicRequestContext) throws -> RunRecord {
        guard let raw = context.parameters.get("id"), let id = Int64(raw) else { throw Failure(status: .badRequest, message: "run id must be an integer") }
        do { return try store.run(id) } catch { throw Failure(status: .notFound, message: "no run \(id)") }
    }
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(bytes: try e.encode(value))))
}
