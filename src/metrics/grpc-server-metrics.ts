import type { status } from '@grpc/grpc-js';
import { Counter, type Registry } from 'prom-client';
import type { GrpcCallObserver, GrpcMethodType, MethodCallObserver } from '../api/call-observer.js';
import { CountedHistogram, LatencyCounts } from './latency-histogram.js';

/**
 * The names go-grpc-prometheus gives gRPC status codes (Go's `codes.Code.String()`), indexed by code, so
 * that dashboards and alerts written for Go servers (`grpc_code!="OK"`, `grpc_code="Unavailable"`) work on
 * kvs2 unchanged.
 */
const CODE_NAMES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
] as const;

/** Where a code outside the table is counted (none is today: grpc-js has exactly these 17). */
const UNKNOWN_CODE = 2;

type MethodLabel = 'grpc_service' | 'grpc_method' | 'grpc_type';
const METHOD_LABELS: readonly MethodLabel[] = ['grpc_service', 'grpc_method', 'grpc_type'];

/**
 * One method's counts, as plain numbers bumped in place: a call costs two clock reads, three increments
 * and a bucket search over 16 bounds, with no allocation and no label lookup (labels are resolved once,
 * here). prom-client reads the numbers only when scraped.
 */
class MethodCalls implements MethodCallObserver {
  readonly labels: Readonly<Record<MethodLabel, string>>;
  startedCount = 0;
  readonly handledByCode = new Float64Array(CODE_NAMES.length);
  readonly latency = new LatencyCounts();

  constructor(labels: Readonly<Record<MethodLabel, string>>) {
    this.labels = labels;
  }

  started(): number {
    this.startedCount++;
    return performance.now();
  }

  handled(code: status, startedAt: number): void {
    const index = code >= 0 && code < CODE_NAMES.length ? code : UNKNOWN_CODE;
    this.handledByCode[index] = (this.handledByCode[index] as number) + 1;
    this.latency.observe((performance.now() - startedAt) / 1000);
  }
}

/**
 * gRPC server metrics named and labelled as go-grpc-prometheus names them: calls started, calls handled by
 * status code, and the handling time histogram, per service, method and method type.
 */
export class GrpcServerMetrics implements GrpcCallObserver {
  readonly #methods = new Map<string, MethodCalls>();

  constructor(registry: Registry) {
    const methods = this.#methods;
    const started: Counter<MethodLabel> = new Counter({
      name: 'grpc_server_started_total',
      help: 'Total number of RPCs started on the server.',
      labelNames: METHOD_LABELS,
      registers: [registry],
      collect: () => {
        started.reset();
        for (const method of methods.values()) started.inc(method.labels, method.startedCount);
      },
    });
    const handled: Counter<MethodLabel | 'grpc_code'> = new Counter({
      name: 'grpc_server_handled_total',
      help: 'Total number of RPCs completed on the server, regardless of success or failure.',
      labelNames: [...METHOD_LABELS, 'grpc_code'],
      registers: [registry],
      collect: () => {
        handled.reset();
        for (const method of methods.values()) {
          method.handledByCode.forEach((count, code) => {
            // Every method shows its OK series, even at 0; other codes once they happen.
            if (count > 0 || code === 0) {
              handled.inc({ ...method.labels, grpc_code: CODE_NAMES[code] as string }, count);
            }
          });
        }
      },
    });
    new CountedHistogram(
      {
        name: 'grpc_server_handling_seconds',
        help: 'Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.',
        labelNames: METHOD_LABELS,
        registry,
      },
      function* () {
        for (const method of methods.values()) yield { labels: method.labels, counts: method.latency };
      },
    );
  }

  method(service: string, method: string, type: GrpcMethodType): MethodCallObserver {
    const key = `${service}/${method}`;
    let calls = this.#methods.get(key);
    if (calls === undefined) {
      calls = new MethodCalls({ grpc_service: service, grpc_method: method, grpc_type: type });
      this.#methods.set(key, calls);
    }
    return calls;
  }
}
