/**
 * The Temporal floor of the benchmark: one workflow per user that does nothing at all. What a
 * workflow costs on this machine and server, whatever it does.
 */
export async function emptyWorkflow(): Promise<void> {
  // Nothing: started, one workflow task, completed.
}
