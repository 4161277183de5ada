import type { SendStall } from '../api/send-stall.js';
import type { Logger } from '../logger.js';

/**
 * How a node reports a snapshot or store image it ended because the receiver took nothing for
 * --snapshot-send-stall-timeout-ms (docs/operations.md lists the line): which receiver, how far it got.
 */
export function sendStallLogger(logger: Logger): (stall: SendStall) => void {
  return ({ transfer, peer, bytesSent, limitMs }) =>
    logger.warn(
      { peer, transfer, bytesSent, limitMs },
      `ended the snapshot sent to ${peer}: it took nothing for ${limitMs} ms after ${bytesSent} bytes (${transfer}); its copy is removed`,
    );
}
