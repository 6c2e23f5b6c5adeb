// The demo shop app that the migration moves: plain node:http and a pg pool, so what it does is
// visible at a glance. Blue (v1) serves from the source database; the app phase starts green on the
// target. Every response says which color answered, so a test can see where HAProxy sent it.
import http from 'node:http';
import pg from 'pg';
import { z } from 'zod';

const PORT = Number(process.env.PORT ?? 3001);
const HOST = process.env.HOST ?? '127.0.0.1';
const DATABASE_URL = process.env.DATABASE_URL;
const COLOR = process.env.APP_COLOR ?? 'blue';
const VERSION = process.env.APP_VERSION ?? 'v1';
if (!DATABASE_URL) {
  console.error('app: DATABASE_URL is required');
  process.exit(2);
}

// bigint columns (ids, counts, cents) arrive as strings by default; the shop's values fit a double.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10, connectionTimeoutMillis: 2_000, idleTimeoutMillis: 10_000, query_timeout: 10_000 });
// A database that goes away must turn into 503s, not crash the app: idle clients report errors here.
pool.on('error', (err) => console.error(`app: idle database client failed: ${err.message}`));
// The pool listens to its idle clients only: a session the server ends while a request holds it (a cutover
// ends every session of the database), or just after, would emit 'error' with nobody listening and kill the
// app. Each client listens for itself for its whole life; its pending or next query fails instead.
pool.on('connect', (client) => client.on('error', (err) => console.error(`app: database session ended: ${err.message}`)));

/** Fraction of ordinary requests that answer 500: the traffic analysis tests set it to fail a canary. */
let errorRate = 0;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-app-color': COLOR,
    'x-app-version': VERSION,
  });
  res.end(text);
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw new HttpError(413, 'request body too large');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new HttpError(400, result.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
  return result.data;
}

/** Direct loopback callers only: HAProxy adds X-Forwarded-For, so faults cannot be set through the front door. */
function isDirectLoopback(req: http.IncomingMessage): boolean {
  const ip = req.socket.remoteAddress ?? '';
  return ['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(ip) && req.headers['x-forwarded-for'] === undefined;
}

async function health(): Promise<{ status: number; body: unknown }> {
  try {
    const exists = await pool.query<{ exists: boolean }>(`select to_regclass('public.orders') is not null as exists`);
    // Green may start on a target the data phase has not filled yet: reachable but empty is healthy.
    const orders = exists.rows[0]?.exists ? (await pool.query<{ n: number }>('select count(*) as n from orders')).rows[0]!.n : null;
    return { status: 200, body: { status: 'ok', color: COLOR, version: VERSION, database: { ok: true, orders } } };
  } catch (err) {
    return { status: 503, body: { status: 'unavailable', color: COLOR, version: VERSION, database: { ok: false, error: (err as Error).message } } };
  }
}

async function getOrder(id: number): Promise<unknown> {
  const order = await pool.query(
    `select o.id, o.invoice_number as "invoiceNumber", o.customer_id as "customerId", c.full_name as "customerName",
            o.status, o.total_cents as "totalCents", o.created_at as "createdAt"
       from orders o join customers c on c.id = o.customer_id
      where o.id = $1`,
    [id],
  );
  if (!order.rowCount) throw new HttpError(404, `order ${id} not found`);
  const items = await pool.query(
    `select i.line_no as "lineNo", i.product_id as "productId", p.sku, p.name, i.quantity, i.unit_price_cents as "unitPriceCents"
       from order_items i join products p on p.id = i.product_id
      where i.order_id = $1 order by i.line_no`,
    [id],
  );
  return { ...order.rows[0], items: items.rows };
}

async function stats(): Promise<unknown> {
  const { rows } = await pool.query<Record<string, number>>(
    `select (select count(*) from customers) as customers, (select count(*) from products) as products,
            (select count(*) from orders) as orders, (select count(*) from order_items) as "orderItems",
            (select count(*) from payments) as payments, (select last_value from invoice_number_seq) as "lastInvoiceNumber"`,
  );
  return rows[0] ?? {};
}

const NewOrder = z.object({
  customerId: z.number().int().positive().optional(),
  items: z.array(z.object({ productId: z.number().int().positive(), quantity: z.number().int().min(1).max(100) })).min(1).max(20).optional(),
});

/** Inserts an order with its items in one transaction; the invoice number comes from the sequence. */
async function createOrder(input: z.infer<typeof NewOrder>): Promise<unknown> {
  const client = await pool.connect();
  // A rollback that fails means the session is gone: the client is dropped from the pool, not reused.
  let broken: Error | undefined;
  try {
    await client.query('begin');
    const customer = input.customerId
      ? await client.query<{ id: number }>('select id from customers where id = $1', [input.customerId])
      : await client.query<{ id: number }>(
          'select id from customers where id >= (select floor(random() * max(id))::bigint + 1 from customers) order by id limit 1',
        );
    if (!customer.rowCount) throw new HttpError(input.customerId ? 422 : 503, input.customerId ? `customer ${input.customerId} not found` : 'no customers to order for');
    const wanted = input.items ?? Array.from({ length: 1 + Math.floor(Math.random() * 3) }, () => ({ productId: 0, quantity: 1 + Math.floor(Math.random() * 3) }));
    const lines: { productId: number; quantity: number; price: number }[] = [];
    for (const item of wanted) {
      const product = item.productId
        ? await client.query<{ id: number; price_cents: number }>('select id, price_cents from products where id = $1', [item.productId])
        : await client.query<{ id: number; price_cents: number }>(
            'select id, price_cents from products where id >= (select floor(random() * max(id))::bigint + 1 from products) order by id limit 1',
          );
      if (!product.rowCount) throw new HttpError(422, `product ${item.productId} not found`);
      lines.push({ productId: product.rows[0]!.id, quantity: item.quantity, price: product.rows[0]!.price_cents });
    }
    const total = lines.reduce((sum, l) => sum + l.quantity * l.price, 0);
    const order = await client.query<{ id: number; invoice_number: number; created_at: Date }>(
      `insert into orders (customer_id, status, total_cents) values ($1, 'pending', $2) returning id, invoice_number, created_at`,
      [customer.rows[0]!.id, total],
    );
    const { id, invoice_number, created_at } = order.rows[0]!;
    for (const [i, line] of lines.entries()) {
      await client.query('insert into order_items (order_id, line_no, product_id, quantity, unit_price_cents) values ($1, $2, $3, $4, $5)', [
        id, i + 1, line.productId, line.quantity, line.price,
      ]);
    }
    await client.query('commit');
    return { id, invoiceNumber: invoice_number, customerId: customer.rows[0]!.id, totalCents: total, items: lines.length, createdAt: created_at };
  } catch (err) {
    await client.query('rollback').catch((rollbackErr: Error) => (broken ??= rollbackErr));
    throw err;
  } finally {
    client.release(broken);
  }
}

async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://app');
  const method = req.method ?? 'GET';

  if (url.pathname === '/health' && method === 'GET') {
    const { status, body } = await health();
    return send(res, status, body);
  }
  if (url.pathname === '/admin/fault') {
    if (!isDirectLoopback(req)) throw new HttpError(403, 'fault injection is only accepted from a direct loopback client');
    if (method === 'POST') errorRate = parse(z.object({ errorRate: z.number().min(0).max(1) }), await readJson(req)).errorRate;
    else if (method !== 'GET') throw new HttpError(405, 'use GET or POST');
    return send(res, 200, { errorRate });
  }
  if (errorRate > 0 && Math.random() < errorRate) throw new HttpError(500, 'injected fault');

  const orderMatch = /^\/api\/orders\/(\d{1,15})$/.exec(url.pathname);
  if (orderMatch && method === 'GET') return send(res, 200, await getOrder(Number(orderMatch[1])));
  if (url.pathname === '/api/orders' && method === 'POST') return send(res, 201, await createOrder(parse(NewOrder, await readJson(req))));
  if (url.pathname === '/api/stats' && method === 'GET') return send(res, 200, await stats());
  if (url.pathname === '/' && method === 'GET') return send(res, 200, { app: 'tiershift demo shop', color: COLOR, version: VERSION });
  throw new HttpError(404, `no route for ${method} ${url.pathname}`);
}

const server = http.createServer((req, res) => {
  route(req, res).catch((err: unknown) => {
    const status = err instanceof HttpError ? err.status : 500;
    if (status >= 500 && !(err instanceof HttpError)) console.error(`app: ${req.method} ${req.url} failed: ${(err as Error).message}`);
    if (!res.headersSent) send(res, status, { error: (err as Error).message, color: COLOR });
    else res.destroy();
  });
});
server.keepAliveTimeout = 10_000;

server.listen(PORT, HOST, () => console.log(`app: ${COLOR} ${VERSION} listening on http://${HOST}:${PORT}`));
server.on('error', (err) => {
  console.error(`app: cannot listen on ${HOST}:${PORT}: ${err.message}`);
  process.exit(1);
});

function shutdown(signal: string): void {
  console.log(`app: ${signal}, shutting down`);
  server.close();
  server.closeAllConnections();
  void pool.end().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 3_000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
