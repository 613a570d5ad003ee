// Drives a live Shipyard with Northflank's official JS client. Prints one JSON object with
// every response the client returned, for tests/e2e/test_js_client.py to assert on.
// Usage: node contract.mjs <host> <token> <git-url> <bundle-url> <sha>
import { ApiClient, ApiClientInMemoryContextProvider } from '@northflank/js-client';

const [host, token, gitUrl, bundleUrl, sha] = process.argv.slice(2);
const provider = new ApiClientInMemoryContextProvider();
await provider.addContext({ name: 'shipyard', token, host });
const api = new ApiClient(provider, { throwErrorOnHttpErrorCode: false });

const out = {};
const pick = (r) => ({ data: r.data, error: r.error ? { status: r.error.status, message: r.error.message, id: r.error.id } : undefined, pagination: r.pagination ? { hasNextPage: r.pagination.hasNextPage, cursor: r.pagination.cursor, count: r.pagination.count } : undefined });
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

// The rest of the build API (issue 10 item 5). Edit a service, then see the next build use it.
const jobP = (jobId) => ({ projectId, jobId });
out.putCombined = pick(await api.put.service.combined({ parameters: { projectId }, data: { name: 'edited', billing: { deploymentPlan: 'nf-compute-10' }, vcsData: vcs('main'), buildSettings } }));
out.putCombinedAgain = pick(await api.put.service.combined({ parameters: { projectId }, data: { name: 'edited', description: 'put twice', vcsData: vcs('main'), buildSettings } }));
out.patchCombined = pick(await api.patch.service.combined({ parameters: { projectId, serviceId: 'edited' }, data: { buildSettings: { dockerfile: { dockerFilePath: '/sub/Dockerfile.custom', dockerWorkDir: '/sub' } } } }));
// No ``data``: the js-client sends no body at all.
out.startEdited = pick(await api.start.service.build({ parameters: svc('edited') }));
out.doneEdited = pick(await wait(() => api.get.service.build({ parameters: { ...svc('edited'), buildId: out.startEdited.data?.id } })));
out.editedLogs = pick(await api.get.service.buildLogs({ parameters: svc('edited'), options: { lineLimit: 1000, textIncludes: 'sub-listing' } }));
out.editedLogs.data = (out.editedLogs.data || []).map((l) => l.log);
out.putBuild = pick(await api.put.service.build({ parameters: { projectId }, data: { name: 'builder2', vcsData: vcs(), buildSettings } }));
out.patchBuild = pick(await api.patch.service.build({ parameters: { projectId, serviceId: 'builder2' }, data: { description: 'patched' } }));
out.putJob = pick(await api.put.job.manual({ parameters: { projectId }, data: { name: 'nightly', vcsData: vcs('main'), buildSettings } }));
out.patchJob = pick(await api.patch.job.manual({ parameters: { projectId, jobId: 'nightly' }, data: { description: 'patched' } }));
out.putCron = pick(await api.put.job.cron({ parameters: { projectId }, data: { name: 'cron', settings: { schedule: '0 0 * * *' }, vcsData: vcs('main'), buildSettings } }));
out.patchCron = pick(await api.patch.job.cron({ parameters: { projectId, jobId: 'cron' }, data: { description: 'patched' } }));
out.buildOptions = pick(await api.update.service.buildOptions({ parameters: svc('edited'), data: { dockerfile: { dockerFilePath: '/Dockerfile', dockerWorkDir: '/', buildkit: { useCache: true } }, pathIgnoreRules: ['*.md'], isAllowList: false, ciIgnoreFlagsEnabled: true, ciIgnoreFlags: ['[skip ci]'], dockerfileTarget: 'base', includeGitFolder: false, fullGitClone: false } }));
out.buildSource = pick(await api.update.service.buildSource({ parameters: svc('edited'), data: { projectUrl: gitUrl, projectType: 'self-hosted', projectBranch: 'feature' } }));
out.jobBuildOptions = pick(await api.update.job.buildOptions({ parameters: jobP('nightly'), data: { dockerfile: { dockerFilePath: '/Dockerfile', dockerWorkDir: '/' } } }));
out.jobBuildSource = pick(await api.update.job.buildSource({ parameters: jobP('nightly'), data: { projectBranch: 'feature' } }));
out.editedAfter = pick(await api.get.service({ parameters: svc('edited') }));
out.resetCache = pick(await api.reset.service.buildCache({ parameters: svc('edited') }));
out.branches = pick(await api.get.service.branches({ parameters: svc('web') }));
out.branchesAll = pick(await api.get.service.branches.all({ parameters: svc('web'), options: { per_page: 1 } }));
out.pullRequests = pick(await api.get.service.pullRequests({ parameters: svc('builder') }));
out.jobBranches = pick(await api.get.job.branches({ parameters: jobP('migrate') }));
out.jobPullRequests = pick(await api.get.job.pullRequests({ parameters: jobP('migrate') }));
const metric = (r) => ({ ...pick(r), data: r.data ? JSON.parse(JSON.stringify(r.data)) : undefined });
out.buildMetrics = metric(await api.get.service.buildMetrics({ parameters: svc('web'), options: { buildId: out.startSha.data?.id } }));
out.buildMetricsRange = metric(await api.get.service.buildMetricsRange({ parameters: svc('web'), options: { buildId: out.startSha.data?.id, startTime: new Date(Date.now() - 3600e3), endTime: new Date(Date.now() + 60e3) } }));
out.jobBuildMetrics = metric(await api.get.job.buildMetrics({ parameters: jobP('migrate') }));
out.jobRuns = pick(await api.get.job.runs({ parameters: jobP('migrate') }));
out.deleteJob = pick(await api.delete.job({ parameters: jobP('nightly') }));
out.deleteService = pick(await api.delete.service({ parameters: svc('builder2') }));
out.deletedService = pick(await api.get.service({ parameters: svc('builder2') }));
out.deleteProjectRefused = pick(await api.delete.project({ parameters: { projectId } }));
out.scratch = pick(await api.create.project({ data: { name: 'JS Scratch', region: 'europe-west' } }));
await api.create.service.combined({ parameters: { projectId: 'js-scratch' }, data: { name: 'tmp', vcsData: vcs('main'), buildSettings } });
out.deleteProject = pick(await api.delete.project({ parameters: { projectId: 'js-scratch' }, options: { delete_child_objects: true } }));
out.deletedProject = pick(await api.get.project({ parameters: { projectId: 'js-scratch' } }));

process.stdout.write(JSON.stringify(out));
process.exit(0);
