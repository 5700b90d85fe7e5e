// A minimal exmail-relay consumer for Node.js, with the official libraries only:
//   amqplib           RabbitMQ (the relay's topic exchange, a queue of our own)
//   standardwebhooks  the webhook signature (every secret we hold, for rotations)
//   cloudevents       HTTP.toEvent + validate(): every event is a valid CloudEvent
//
// Configuration (environment):
//   AMQP_URL          amqp://user:password@host:5672/ (unset: no RabbitMQ consumer)
//   AMQP_EXCHANGE     the relay's [amqp] exchange              (default exmail.events)
//   AMQP_QUEUE        our own durable queue, bound to it         (default oa.exmail)
//   AMQP_BINDING      binding key, e.g. "acme.mail.*"            (default #)
//   WEBHOOK_PORT      port of the webhook receiver (0: any; unset: no receiver)
//   WEBHOOK_SECRETS   the endpoint's whsec_... secret; during a rotation the old and
//                     the new one, separated by spaces
//
// It prints one JSON line per event it accepted (what a real consumer would handle),
// {"refused": ...} for anything it refused, and {"ready": ...} once it listens.
"use strict";

const http = require("node:http");
const amqp = require("amqplib");
const { HTTP } = require("cloudevents");
const { Webhook } = require("standardwebhooks");

const MAX_BODY = 1 << 20; // read a body whole, or refuse it
const PREFIXES = ["cloudEvents_", "cloudEvents:"]; // binary mode attribute headers

function out(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

// What the consumer does with an event. Delivery is at least once: the id is the
// deduplication key (a real consumer keeps it in its database; here, in memory).
const seen = new Set();
let stopping = false;
function handle(event, via, extra) {
  const duplicate = seen.has(event.id);
  seen.add(event.id);
  out({ via, id: event.id, type: event.type, subject: event.subject, data: event.data, duplicate, ...extra });
}

// -- RabbitMQ --------------------------------------------------------------------------

// An AMQP message as the CloudEvents HTTP binding sees it: structured mode has the
// content type application/cloudevents+json and the whole event as the body; binary
// mode has data as the body and the attributes in cloudEvents_* headers.
function eventFromAmqp(message) {
  const contentType = message.properties.contentType || "";
  const headers = { "content-type": contentType };
  let mode = "structured";
  if (!contentType.startsWith("application/cloudevents")) {
    mode = "binary";
    for (const [name, value] of Object.entries(message.properties.headers || {})) {
      const prefix = PREFIXES.find((p) => name.startsWith(p));
      if (prefix) headers["ce-" + name.slice(prefix.length)] = String(value);
    }
  }
  const event = HTTP.toEvent({ headers, body: message.content.toString("utf8") });
  event.validate(); // throws a ValidationError naming what is wrong
  return { event, mode };
}

async function consumeAmqp() {
  const connection = await amqp.connect(process.env.AMQP_URL);
  // amqplib does not reconnect: on a lost connection, exit non-zero and let the process
  // supervisor restart us (unacknowledged messages are redelivered, the ids dedup them).
  connection.on("error", (err) => console.error("RabbitMQ:", err.message));
  connection.on("close", () => {
    if (!stopping) {
      console.error("RabbitMQ connection closed");
      process.exit(1);
    }
  });
  const channel = await connection.createChannel();
  const exchange = process.env.AMQP_EXCHANGE || "exmail.events";
  const queue = process.env.AMQP_QUEUE || "oa.exmail";
  await channel.assertExchange(exchange, "topic", { durable: true });
  await channel.assertQueue(queue, { durable: true });
  await channel.bindQueue(queue, exchange, process.env.AMQP_BINDING || "#");
  await channel.prefetch(50);
  await channel.consume(queue, (message) => {
    if (message === null) return; // the queue was deleted
    let parsed;
    try {
      parsed = eventFromAmqp(message);
    } catch (err) {
      out({ via: "amqp", refused: String(err.message || err), id: message.properties.messageId });
      channel.nack(message, false, false); // never redeliver what cannot be read
      return;
    }
    handle(parsed.event, "amqp", { mode: parsed.mode, routing_key: message.fields.routingKey });
    channel.ack(message);
  });
  return connection;
}

// -- webhooks --------------------------------------------------------------------------

function webhookServer(secrets) {
  const verifiers = secrets.map((secret) => new Webhook(secret));
  return http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        res.writeHead(413).end();
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (size > MAX_BODY) return;
      const raw = Buffer.concat(chunks); // verify the raw bytes, never re-serialized JSON
      const verifiedWith = [];
      verifiers.forEach((verifier, index) => {
        try {
          verifier.verify(raw, req.headers);
          verifiedWith.push(index);
        } catch (err) {
          // not signed with this secret (or too old): try the next one
        }
      });
      if (verifiedWith.length === 0) {
        out({ via: "webhook", refused: "no signature verifies", id: req.headers["webhook-id"] });
        res.writeHead(401).end();
        return;
      }
      let event;
      try {
        event = HTTP.toEvent({ headers: req.headers, body: raw.toString("utf8") });
        event.validate();
      } catch (err) {
        out({ via: "webhook", refused: String(err.message || err), id: req.headers["webhook-id"] });
        res.writeHead(400).end();
        return;
      }
      handle(event, "webhook", { verified_with: verifiedWith, content_type: req.headers["content-type"] });
      res.writeHead(204).end();
    });
  });
}

async function main() {
  const closers = [];
  const ready = {};
  if (process.env.AMQP_URL) {
    const connection = await consumeAmqp();
    closers.push(() => connection.close());
    ready.amqp = true;
  }
  if (process.env.WEBHOOK_PORT !== undefined) {
    const secrets = (process.env.WEBHOOK_SECRETS || "").split(/\s+/).filter(Boolean);
    if (secrets.length === 0) throw new Error("WEBHOOK_SECRETS is required with WEBHOOK_PORT");
    const server = webhookServer(secrets);
    await new Promise((resolve) => server.listen(Number(process.env.WEBHOOK_PORT), "127.0.0.1", resolve));
    closers.push(() => new Promise((resolve) => server.close(resolve)));
    ready.webhook_port = server.address().port;
  }
  out({ ready });
  const stop = async () => {
    stopping = true;
    for (const close of closers) await close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
