import Foundation

/// SIGTERM (what Slurm sends before preemption) and SIGINT ask a run to stop at the next step
/// boundary, after a checkpoint; a second signal ends the process at once.
public enum StopRequest {
    /// The signal received, 0 while none has been.
    nonisolated(unsafe) public private(set) static var signal: Int32 = 0

    public static func install() {
        for s in [SIGTERM, SIGINT] {
            Foundation.signal(s) { received in
                if StopRequest.signal != 0 { _exit(128 + received) }
                StopRequest.signal = received
            }
        }
    }
}
