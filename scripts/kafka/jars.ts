import { execFile } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { acquireLock } from './lock-file.js';

const run = promisify(execFile);

/** One pinned version: 4.1.x is what the client library we test against supports, and it resolves on Java 17. */
export const KAFKA_VERSION = '4.1.1';
const SCALA_VERSION = '2.13';
/** Kafka 4.1 logs through SLF4J 1.7 to Log4j 2.24.3; its binary distribution binds them with this jar. */
const LOG4J_VERSION = '2.24.3';

/** Where Maven's copy of Kafka's jars is kept between runs (KVS2_KAFKA_CACHE overrides it in the CLI). */
export function defaultCacheDir(): string {
  return join(homedir(), '.cache', 'kvs2', `kafka-${KAFKA_VERSION}`);
}

/** The JVM classpath of Kafka's jars in `cacheDir` (a wildcard the JVM expands itself). */
export function kafkaClasspath(cacheDir: string): string {
  return join(cacheDir, 'libs', '*');
}

function cacheComplete(cacheDir: string): boolean {
  const libs = join(cacheDir, 'libs');
  const marker = join(cacheDir, '.complete');
  return (
    existsSync(marker) &&
    readFileSync(marker, 'utf8').trim() === KAFKA_VERSION &&
    [`kafka_${SCALA_VERSION}-${KAFKA_VERSION}.jar`, `kafka-tools-${KAFKA_VERSION}.jar`].every((jar) =>
      existsSync(join(libs, jar)),
    )
  );
}

/**
 * Downloads Kafka's jars with Maven into `cacheDir` unless they are there. The marker file is written only
 * after a finished download, so an interrupted one is never used; a lock serialises concurrent first runs.
 */
export async function ensureJars(cacheDir: string, log: (line: string) => void): Promise<void> {
  if (cacheComplete(cacheDir)) return;
  await mkdir(dirname(cacheDir), { recursive: true });
  const release = await acquireLock(`${cacheDir}.lock`, 10 * 60_000);
  try {
    if (cacheComplete(cacheDir)) return;
    log(`downloading Kafka ${KAFKA_VERSION} jars with Maven into ${cacheDir} (once)`);
    const tmp = await mkdtemp(`${cacheDir}.tmp.`);
    await writeFile(join(tmp, 'pom.xml'), pom());
    try {
      await run(
        'mvn',
        [
          '-B',
          '-q',
          '-Dstyle.color=never',
          'dependency:copy-dependencies',
          '-DincludeScope=runtime',
          `-DoutputDirectory=${join(tmp, 'libs')}`,
        ],
        {
          cwd: tmp,
          maxBuffer: 64 * 1024 * 1024,
        },
      );
    } catch (error) {
      await rm(tmp, { recursive: true, force: true });
      const { code, stdout } = error as NodeJS.ErrnoException & { stdout?: string };
      if (code === 'ENOENT') throw new Error(`Kafka's jars are not cached in ${cacheDir} and mvn is not installed`);
      throw new Error(
        `Maven could not download Kafka ${KAFKA_VERSION}:\n${(stdout ?? '').split('\n').slice(-30).join('\n')}`,
      );
    }
    // Replace an incomplete earlier download, but only one of ours.
    if (existsSync(cacheDir)) {
      const old = await readFile(join(cacheDir, 'pom.xml'), 'utf8').catch(() => '');
      if (!old.includes('local.kvs2')) throw new Error(`${cacheDir} exists and is not a kvs2 Kafka cache; remove it`);
      await rm(cacheDir, { recursive: true, force: true });
    }
    await rename(tmp, cacheDir);
    await writeFile(join(cacheDir, '.complete'), `${KAFKA_VERSION}\n`);
    if (!cacheComplete(cacheDir)) throw new Error(`the download finished but ${cacheDir}/libs lacks Kafka's jars`);
  } finally {
    await release();
  }
}

/**
 * A throwaway pom: the broker, the admin tools (without Kafka Connect's runtime, which drags in Jetty and
 * Jersey and no tool we use needs), and the SLF4J binding so that logs follow our Log4j 2 configuration.
 */
function pom(): string {
  const dependency = (group: string, artifact: string, version: string, exclusions = '') =>
    `<dependency><groupId>${group}</groupId><artifactId>${artifact}</artifactId><version>${version}</version>${exclusions}</dependency>`;
  return `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kvs2</groupId><artifactId>kafka-runtime</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    ${dependency('org.apache.kafka', `kafka_${SCALA_VERSION}`, KAFKA_VERSION)}
    ${dependency(
      'org.apache.kafka',
      'kafka-tools',
      KAFKA_VERSION,
      '<exclusions><exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion></exclusions>',
    )}
    ${dependency('org.apache.logging.log4j', 'log4j-slf4j-impl', LOG4J_VERSION)}
  </dependencies>
</project>
`;
}

/**
 * The `java` to run (JAVA_HOME's, else the one on PATH), checked to be Java 17+ as Kafka 4 needs. The
 * version comes from the JDK's `release` file when there is one, which spares a JVM start.
 */
export async function findJava(javaHome: string | undefined): Promise<string> {
  const java = javaHome && existsSync(join(javaHome, 'bin', 'java')) ? join(javaHome, 'bin', 'java') : onPath('java');
  if (java === undefined) throw new Error('no java found: install a JDK 17+ or set JAVA_HOME');
  const major = Number((await javaVersion(java)).split('.')[0]);
  if (!(major >= 17)) throw new Error(`Kafka ${KAFKA_VERSION} needs Java 17+, but ${java} is Java ${major || '?'}`);
  return java;
}

function onPath(command: string): string | undefined {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .map((dir) => join(dir, command))
    .find((file) => existsSync(file));
}

async function javaVersion(java: string): Promise<string> {
  const release = join(dirname(dirname(realpathSync(java))), 'release');
  const fromRelease = existsSync(release) ? /^JAVA_VERSION="([^"]+)"/m.exec(readFileSync(release, 'utf8')) : null;
  if (fromRelease?.[1]) return fromRelease[1];
  // macOS's /usr/bin/java is a launcher stub, not a link into a JDK: ask the JVM.
  const { stderr } = await run(java, ['-XshowSettings:properties', '-version']);
  return /java\.specification\.version = (\S+)/.exec(stderr)?.[1] ?? '';
}
