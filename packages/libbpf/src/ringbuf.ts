/**
 * A BPF ring buffer read on the Node event loop: the kernel's writes wake a libuv poll on
 * libbpf's epoll fd and every wake-up hands the callback all samples then queued, in order. No
 * timer and no thread; the poll does not keep the process alive. The callback runs as a timer's
 * would: what it throws is the process's uncaught exception, so handle errors inside it.
 */
import { BpfError } from './errors';
import type { BpfMap } from './map';
import { native, type RingbufHandle } from './native';

export class RingBuffer {
  private handle: RingbufHandle | null;

  private constructor(
    handle: RingbufHandle,
    private readonly target: string,
  ) {
    this.handle = handle;
  }

  /** Starts reading map (type ringbuf); onSamples gets each batch as separate Buffers (copies). */
  static open(map: BpfMap, onSamples: (samples: Buffer[]) => void): RingBuffer {
    const target = `map ${map.name}`;
    if (map.type !== 'ringbuf') throw new BpfError({ errno: 22, code: 'EINVAL', op: 'ring buffer', target, detail: `map type is ${map.type}, not ringbuf` });
    return new RingBuffer(native.ringbufOpen(map.fd, onSamples, target), target);
  }

  /** Delivers what is queued now, synchronously (tests, and a final drain before close). */
  consume(): number {
    return this.handle ? native.ringbufConsume(this.handle, this.target) : 0;
  }

  close(): void {
    if (this.handle) native.ringbufClose(this.handle);
    this.handle = null;
  }
}
