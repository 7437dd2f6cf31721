import { DEFAULT_SPLICE, validSplice } from './splice';
import { SockopsBackend, SockopsBackendError } from './backend';

describe('splice setting', () => {
  it('defaults to none: splicing is an opt-in (it takes backpressure away)', () => {
    expect(DEFAULT_SPLICE).toBe('none');
  });

  it('canonicalises port lists; an empty list is none', () => {
    expect(validSplice([9080, 8080, 9080])).toEqual([8080, 9080]);
    expect(validSplice([])).toBe('none');
    expect(validSplice('all')).toBe('all');
    expect(validSplice('none')).toBe('none');
  });

  it.each<[string, unknown, RegExp]>([
    ['port 0', [8080, 0], /splice port 0 is not a port \(1-65535\)/],
    ['port 70000', [70000], /splice port 70000 is not a port/],
    ['a fraction', [80.5], /splice port 80.5 is not a port/],
    ['a string port', ['8080'], /splice port "8080" is not a port/],
    ['an unknown word', 'some', /splice "some" is not 'all', 'none' or a list of ports/],
    ['1025 ports', Array.from({ length: 1025 }, (_, i) => i + 1), /1025 splice ports, at most 1024/],
  ])('rejects %s naming the value', (_what, bad, message) => {
    expect(() => validSplice(bad)).toThrow(message);
  });

  it('the backend refuses a bad setting at construction, before touching the kernel', () => {
    expect(() => new SockopsBackend({ splice: [8080, 65536] })).toThrow(SockopsBackendError);
    expect(() => new SockopsBackend({ splice: [8080, 65536] })).toThrow(/sockops: splice port 65536 is not a port/);
  });
});
