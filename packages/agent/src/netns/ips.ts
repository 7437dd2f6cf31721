import { Netlink } from '@shunt/netlink';

/** The addresses configured in a netns (through `nsenter --net=<path> ip -json addr`). */
export async function listNetnsIps(netnsPath: string): Promise<string[]> {
  const addrs = await Netlink.at(netnsPath).addresses();
  return addrs.map((a) => a.address);
}
