import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { acquireLock } from './lock-file.js';

const run = promisify(execFile);

/**
 * A class-data-sharing archive (the JDK's AppCDS) of the classes a broker loads: a JVM that maps it skips
 * loading and verifying most of Kafka's classes, which makes a broker, and each storage format, start in
 * about half the CPU time. It is made once per JDK and jar cache by `train`, which must run one broker with
 * the given JVM option until it serves requests and then stop it cleanly (the JVM writes the archive as
 * it exits). Returns the JVM options that use it, or none when it cannot be made: brokers then start as
 * they would without it.
 */
export async function classArchiveOptions(
  java: string,
  classpath: string,
  cacheDir: string,
  train: (jvmOption: string) => Promise<void>,
  log: (line: string) => void,
): Promise<string[]> {
  // An archive only maps into the JVM build that wrote it: one per java binary (and its update).
  const binary = realpathSync(java);
  const key = createHash('sha256')
    .update(`${binary} ${statSync(binary).mtimeMs}`)
    .digest('hex')
    .slice(0, 12);
  const archive = join(cacheDir, `classes-${key}.jsa`);
  const use = [`-XX:SharedArchiveFile=${archive}`];
  if (existsSync(archive)) return use;
  const release = await acquireLock(`${archive}.lock`, 10 * 60_000);
  const workDir = await mkdtemp(join(cacheDir, 'class-archive.'));
  try {
    if (existsSync(archive)) return use;
    log('making a class-data archive of Kafka for faster JVM starts (once, with one throwaway broker)');
    const written = join(workDir, 'classes.jsa');
    await train(`-XX:ArchiveClassesAtExit=${written}`);
    // -Xshare:on fails unless the archive maps, so a half-written one is never kept.
    await run(java, ['-cp', classpath, `-XX:SharedArchiveFile=${written}`, '-Xshare:on', '-version']);
    await rename(written, archive);
    return use;
  } catch (error) {
    log(`no class-data archive, brokers start without it: ${error instanceof Error ? error.message : String(error)}`);
    return [];
  } finally {
    await rm(workDir, { recursive: true, force: true });
    await release();
  }
}
