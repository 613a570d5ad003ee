// The seed pages' start-build examples through Northflank's official JS client, verbatim
// (only the sha replaced). Prints the responses as JSON for tests/e2e/test_seed_examples.py.
// Usage: node seed_examples.mjs <host> <token> <git-url> <overrides-example-json> <plain-example-json>
import { ApiClient, ApiClientInMemoryContextProvider } from '@northflank/js-client';

const [host, token, gitUrl, overridesExample, plainExample] = process.argv.slice(2);
const provider = new ApiClientInMemoryContextProvider();
await provider.addContext({ name: 'shipyard', token, host });
const api = new ApiClient(provider, { throwErrorOnHttpErrorCode: false });
const pick = (r) => ({ data: r.data, error: r.error ? { status: r.error.status, message: r.error.message } : undefined });
const vcsData = { projectUrl: gitUrl, projectType: 'self-hosted', projectBranch: 'main' };
const buildSettings = { dockerfile: { buildEngine: 'buildkit', dockerFilePath: '/Dockerfile', dockerWorkDir: '/' } };
const overrides = JSON.parse(overridesExample).overrides;
const out = {};

const projectId = (await api.create.project({ data: { name: 'js-seed', region: 'europe-west' } })).data?.id;
const job = { projectId, jobId: 'seed-job' };
const svc = { projectId, serviceId: 'seed-web' };
out.job = pick(await api.create.job.manual({ parameters: { projectId }, data: { name: 'seed-job', vcsData, buildSettings } }));
out.service = pick(await api.create.service.combined({ parameters: { projectId }, data: { name: 'seed-web', vcsData, buildSettings } }));
// The job's stored set: the example's files and mounts, and NODE_ENV for the templating.
out.sent = { buildArguments: { NODE_ENV: 'production' }, buildFiles: overrides.buildFiles, dockerSecretMounts: overrides.dockerSecretMounts };
out.update = pick(await api.update.job.buildArguments({ parameters: job, data: out.sent }));
out.got = pick(await api.get.job.buildArguments({ parameters: job }));
out.startJob = pick(await api.start.job.build({ parameters: job, data: JSON.parse(overridesExample) }));
out.startJobPlain = pick(await api.start.job.build({ parameters: job, data: JSON.parse(plainExample) }));
out.startService = pick(await api.start.service.build({ parameters: svc, data: JSON.parse(overridesExample) }));
const wait = async (get) => {
  for (let i = 0; i < 900; i++) {
    const r = await get();
    if (r.data?.concluded) return r;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error('build did not conclude');
};
out.doneJob = pick(await wait(() => api.get.job.build({ parameters: { ...job, buildId: out.startJob.data?.id } })));
out.doneJobPlain = pick(await wait(() => api.get.job.build({ parameters: { ...job, buildId: out.startJobPlain.data?.id } })));
out.doneService = pick(await wait(() => api.get.service.build({ parameters: { ...svc, buildId: out.startService.data?.id } })));
process.stdout.write(JSON.stringify(out));
process.exit(0);
