// A minimal WebSocket server side (RFC 6455) on Node's built-in http upgrade, for the mock
// gateway only: text frames, fragmentation, ping/pong and close. No extensions.
import crypto from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export function acceptWebSocket(req, socket) {
  const key = req.headers["sec-websocket-key"];
  if (!key) {
    socket.end("HTTP/1.1 400 Bad Request\r\n\r\n");
    return null;
  }
  const accept = crypto.createHash("sha1").update(key + GUID).digest("base64");
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  socket.setNoDelay(true);
  const ws = new MockSocket(socket);
  return ws;
}

class MockSocket {
  constructor(socket) {
    this.socket = socket;
    this.open = true;
    this.onmessage = () => {};
    this.onclose = () => {};
    this.buf = Buffer.alloc(0);
    this.parts = [];
    socket.on("data", (chunk) => this.read(chunk));
    socket.on("close", () => this.closed());
    socket.on("error", () => this.closed());
  }

  closed() {
    if (!this.open) return;
    this.open = false;
    this.onclose();
  }

  read(chunk) {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.buf.length < 2) return;
      const b0 = this.buf[0];
      const b1 = this.buf[1];
      const fin = (b0 & 0x80) !== 0;
      const op = b0 & 0x0f;
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      const mask = masked ? this.buf.subarray(off, off + 4) : null;
      if (masked) off += 4;
      if (this.buf.length < off + len) return;
      const payload = Buffer.from(this.buf.subarray(off, off + len));
      this.buf = this.buf.subarray(off + len);
      if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      if (op === 0x8) {
        this.frame(0x8, payload.subarray(0, 2));
        this.socket.end();
        this.closed();
        return;
      }
      if (op === 0x9) {
        this.frame(0xa, payload);
        continue;
      }
      if (op === 0xa) continue;
      this.parts.push(payload);
      if (fin) {
        const text = Buffer.concat(this.parts).toString("utf8");
        this.parts = [];
        try {
          this.onmessage(text);
        } catch (exc) {
          console.error("mock: handler failed", exc);
        }
      }
    }
  }

  frame(op, payload) {
    if (!this.open) return;
    const len = payload.length;
    let head;
    if (len < 126) head = Buffer.from([0x80 | op, len]);
    else if (len < 65536) {
      head = Buffer.alloc(4);
      head[0] = 0x80 | op;
      head[1] = 126;
      head.writeUInt16BE(len, 2);
    } else {
      head = Buffer.alloc(10);
      head[0] = 0x80 | op;
      head[1] = 127;
      head.writeBigUInt64BE(BigInt(len), 2);
    }
    this.socket.write(Buffer.concat([head, payload]));
  }

  send(text) {
    this.frame(0x1, Buffer.from(typeof text === "string" ? text : JSON.stringify(text), "utf8"));
  }

  close(code = 1000, reason = "") {
    const r = Buffer.from(reason, "utf8").subarray(0, 120);
    const p = Buffer.alloc(2 + r.length);
    p.writeUInt16BE(code, 0);
    r.copy(p, 2);
    this.frame(0x8, p);
    this.socket.end();
    this.closed();
  }
}
