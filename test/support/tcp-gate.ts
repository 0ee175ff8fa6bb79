// A TCP forwarder to a local port that can be "down" (every connection closed at once): a registry that is
// unreachable for a while, with the real one behind it.
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { freePort } from './peers.js';

export interface TcpGate {
  url: string;
  setUp(up: boolean): void;
}

/** A TCP forwarder to `port` that, while down, closes every connection at once (a target that is unreachable). */
export async function tcpGate(t: TestContext, port: number): Promise<TcpGate> {
  const listen = await freePort();
  let up = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (!up) return client.destroy();
    const target = connect(port, '127.0.0.1');
    sockets.add(client).add(target);
    client.pipe(target).pipe(client);
    const close = () => {
      client.destroy();
      target.destroy();
      sockets.delete(client);
      sockets.delete(target);
    };
    client.on('error', close).on('close', close);
    target.on('error', close).on('close', close);
  });
  await new Promise<void>((r) => server.listen(listen, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return {
    url: `http://127.0.0.1:${listen}`,
    setUp(v: boolean) {
      up = v;
      if (!v) for (const s of sockets) s.destroy();
    },
  };
}
