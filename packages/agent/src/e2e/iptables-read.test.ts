// The reader behind every "no SHUNT_ chains left" check must fail loudly when it cannot read.
import { readShuntChains } from './iptables-read';

it('a netns that cannot be entered is an error, not "no chains"', async () => {
  await expect(readShuntChains('/var/run/netns/shunt-test-does-not-exist')).rejects.toThrow(/iptables-(legacy|nft)-save -c in \/var\/run\/netns\/shunt-test-does-not-exist failed/);
});

it('positive control: a readable netns (this process’s own) gives an answer', async () => {
  await expect(readShuntChains('/proc/self/ns/net')).resolves.toEqual(expect.any(Array));
});
