// Drives a live Shipyard with Northflank's official JS client. Prints one JSON object with
// every response the client returned, for tests/e2e/test_js_client.py to assert on.
// Usage: node contract.mjs <host> <token> <git-url> <bundle-url> <sha>
import { ApiClient, ApiClientInMemoryContextProvider } from '@northflank/js-client';

const [host, token, gitUrl, bundleUrl, sha] = process.argv.slice(2);
const provider = new ApiClientInMemoryContextProvider();
await provider.addContext({ name: 'shipyard', token, host });
const api = new ApiClient(provider, { throwErrorOnHttpErrorCode: false });

const out = {};
const pick = (r) => ({ data: r.data, error: r.error ? { status: r.error.status, message: r.error.message } : undefined, pagination: r.pagination ? { hasNextPage: r.pagination.hasNextPage, cursor: r.pagination.cursor, count: r.pagination.count } : undefined });
const vcs = (branch) => ({ projectUrl: gitUrl, projectType: 'self-hosted', ...(branch ? { projectBranch: branch } : {}) });
const buildSettings = { dockerfile: { buildEngine: 'buildkit', dockerFilePath: '/Dockerfile', dockerWorkDir: '/' } };
const smallTarget = { docker: { dockerfileTarget: 'base' } };

out.project = pick(await api.create.project({ data: { name: 'JS Client', description: 'via js-client', region: 'europe-west' } }));
const projectId = out.project.data?.id;
out.combined = pick(await api.create.service.combined({ parameters: { projectId }, data: { name: 'web', billing: { deploymentPlan: 'nf-compute-10' }, deployment: { instances: 1 }, vcsData: vcs('main'), buildSettings } }));
out.buildService = pick(await api.create.service.build({ parameters: { projectId }, data: { name: 'builder', billing: { deploymentPlan: 'nf-compute-10' }, vcsData: vcs(), buildSettings } }));
out.job = pick(await api.create.job.manual({ parameters: { projectId }, data: { name: 'migrate', billing: { deploymentPlan: 'nf-compute-10' }, vcsData: vcs('main'), buildSettings } }));

const svc = (serviceId) => ({ projectId, serviceId });
out.startSha = pick(await api.start.service.build({ parameters: svc('web'), data: { sha, overrides: smallTarget } }));
out.startBranch = pick(await api.start.service.build({ parameters: svc('builder'), data: { branch: 'feature', overrides: smallTarget } }));
out.startPr = pick(await api.start.service.build({ parameters: svc('builder'), data: { pullRequestId: 5, overrides: smallTarget } }));
out.startBundle = pick(await api.start.service.build({ parameters: svc('builder'), data: { bundleUrl } }));
out.startJob = pick(await api.start.job.build({ parameters: { projectId, jobId: 'migrate' }, data: { sha, overrides: smallTarget } }));
out.startSlow = pick(await api.start.service.build({ parameters: svc('builder'), data: { branch: 'main', overrides: { docker: { dockerfileTarget: 'slow' } } } }));
out.badSha = pick(await api.start.service.build({ parameters: svc('builder'), data: { branch: 'main', sha: 'abc' } }));
out.teamScoped = pick(await api.get.service.build({ parameters: { teamId: 'any-team', ...svc('web'), buildId: out.startSha.data?.id } }));

const wait = async (get) => {
  for (let i = 0; i < 600; i++) {
    const r = await get();
    if (r.data?.concluded) return r;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error('build did not conclude');
};
// Follow one build's logs live over the websocket while it runs.
const tailed = [];
const tail = await api.logs.tailServiceBuildLogs({ parameters: svc('builder'), options: { buildId: out.startBranch.data?.id } });
const tailClosed = new Promise((resolve) => tail.on('close', resolve));
tail.on('logs-received', (lines) => tailed.push(...lines.map((l) => l.log)));
tail.on('error', (e) => tailed.push(`ERROR ${e}`));
await tail.start();

out.doneSha = pick(await wait(() => api.get.service.build({ parameters: { ...svc('web'), buildId: out.startSha.data?.id } })));
out.doneBranch = pick(await wait(() => api.get.service.build({ parameters: { ...svc('builder'), buildId: out.startBranch.data?.id } })));
out.donePr = pick(await wait(() => api.get.service.build({ parameters: { ...svc('builder'), buildId: out.startPr.data?.id } })));
out.doneBundle = pick(await wait(() => api.get.service.build({ parameters: { ...svc('builder'), buildId: out.startBundle.data?.id } })));
out.doneJob = pick(await wait(() => api.get.job.build({ parameters: { projectId, jobId: 'migrate', buildId: out.startJob.data?.id } })));
await Promise.race([tailClosed, new Promise((res) => setTimeout(res, 15000))]);
out.tailed = tailed;

out.abort = pick(await api.abort.service.build({ parameters: { ...svc('builder'), buildId: out.startSlow.data?.id } }));
out.doneSlow = pick(await wait(() => api.get.service.build({ parameters: { ...svc('builder'), buildId: out.startSlow.data?.id } })));

out.listPage1 = pick(await api.get.service.builds({ parameters: svc('builder'), options: { per_page: 2 } }));
out.listAll = pick(await api.get.service.builds.all({ parameters: svc('builder'), options: { per_page: 2 } }));
out.logs = pick(await api.get.service.buildLogs({ parameters: svc('builder'), options: { buildId: out.startBranch.data?.id, lineLimit: 500 } }));
out.logs.data = (out.logs.data || []).map((l) => ({ containerId: l.containerId, log: l.log, ts: l.ts instanceof Date ? l.ts.toISOString() : l.ts }));
out.missing = pick(await api.get.service.build({ parameters: { ...svc('builder'), buildId: 'no-such-0000' } }));

process.stdout.write(JSON.stringify(out));
process.exit(0);
