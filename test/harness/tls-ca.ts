/**
 * A private certificate authority for one test file, made with the `openssl` CLI (OpenSSL 3, Debian 12): a CA
 * certificate, and server certificates it issues for the names a test asks for. Keys are P-256 (fast to make,
 * accepted by Node, ejabberd's fast_tls and Prosody's LuaSec). Everything lives in one temp dir, removed by
 * remove() or when the test process exits.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface ServerCertificate {
  /** The server's certificate (PEM), issued by the CA. */
  readonly certFile: string;
  /** Its private key (PEM, unencrypted). */
  readonly keyFile: string;
}

export interface TestCa {
  readonly dir: string;
  /** The CA certificate (PEM): what XMPP_TLS_CA_FILE points at. */
  readonly caFile: string;
  /** A server certificate for these DNS names and IP addresses (subjectAltName; CN is the first). */
  issue(names: string[]): ServerCertificate;
  remove(): void;
}

const live = new Set<string>();
process.on("exit", () => {
  for (const dir of live) rmSync(dir, { recursive: true, force: true });
});

/** A new CA named `name` (its subject CN), valid from now for two days. */
export function createTestCa(name = "xmpp-client-proxy test CA"): TestCa {
  const dir = mkdtempSync(join(tmpdir(), "xcp-ca-"));
  live.add(dir);
  const caKey = join(dir, "ca.key");
  const caFile = join(dir, "ca.crt");
  try {
    openssl(
      "req",
      "-x509",
      ...NEW_KEY,
      "-keyout",
      caKey,
      "-out",
      caFile,
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    );
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    live.delete(dir);
    throw error;
  }

  let issued = 0;
  return {
    dir,
    caFile,
    issue(names) {
      const [first] = names;
      if (!first) throw new Error("issue(): name at least one DNS name or IP address");
      const base = join(dir, `server-${++issued}`);
      const certFile = `${base}.crt`;
      const keyFile = `${base}.key`;
      const csr = `${base}.csr`;
      const extensions = `${base}.ext`;
      const altNames = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(",");
      writeFileSync(
        extensions,
        [
          "basicConstraints=critical,CA:FALSE",
          "keyUsage=critical,digitalSignature",
          "extendedKeyUsage=serverAuth",
          `subjectAltName=${altNames}`,
          "",
        ].join("\n"),
      );
      openssl("req", "-new", ...NEW_KEY, "-keyout", keyFile, "-out", csr, "-subj", `/CN=${first}`);
      openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        caFile,
        "-CAkey",
        caKey,
        "-set_serial",
        `0x${randomBytes(8).toString("hex")}`,
        "-days",
        "2",
        "-extfile",
        extensions,
        "-out",
        certFile,
      );
      return { certFile, keyFile };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
      live.delete(dir);
    },
  };
}

const NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

function openssl(...args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`openssl ${args[0]} failed (is the openssl CLI installed?): ${stderr || error}`);
  }
}
