/**
 * A released version of the service, taken from this repository's history into a temp dir, to run beside the
 * current code against the same store (a rolling update). It shares this checkout's node_modules: the versions
 * used so far have the same dependencies (the caller picks a commit whose package-lock.json matches).
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const run = promisify(execFile);

export interface Release {
  /** The directory to run it from: startService(env, { root }). */
  readonly root: string;
  remove(): Promise<void>;
}

export async function extractRelease(commit: string): Promise<Release> {
  try {
    await run("git", ["-C", ROOT, "cat-file", "-e", `${commit}^{commit}`]);
  } catch {
    throw new Error(
      `commit ${commit} is not in this clone's history: the rolling-update test needs a full clone`,
    );
  }
  const root = await mkdtemp(join(tmpdir(), "xcp-release-"));
  try {
    // git archive | tar -x, without a shell.
    await run("sh", [
      "-c",
      'git -C "$1" archive --format=tar "$2" | tar -x -C "$3"',
      "sh",
      ROOT,
      commit,
      root,
    ]);
    await symlink(join(ROOT, "node_modules"), join(root, "node_modules"));
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  return { root, remove: () => rm(root, { recursive: true, force: true }) };
}
