/**
 * What a remote scan needs of a connection to its target: fixed commands with bounded
 * output, an SFTP channel, and a name for messages. ssh.ts's SshSession is the one
 * implementation; the agentless collection takes this interface, so neither module
 * imports the other's code.
 */

/** The outcome of a remote command (execa's result shape), stdout as bytes. */
export interface RemoteResult {
  code: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: string;
}

/** An open connection to one target, for fixed read-only commands. */
export interface RemoteSession {
  /** The target as messages name it. */
  readonly where: string;
  /**
   * Run one fixed command, with `stdin` sent and closed; stdout is bounded by
   * `maxStdout` (DRIFT_ERR_TOO_LARGE past it).
   */
  exec(command: string, opts: { stdin?: Buffer | Promise<Buffer>; maxStdout: number }): Promise<RemoteResult>;
  /** An SFTP channel on this connection (for bounded reads of small files). */
  sftp(): Promise<unknown>;
}
