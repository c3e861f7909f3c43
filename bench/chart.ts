/**
 * The chart of a run, as hand-written SVG: requests per second per path (bars), and p50 / p99 latency per
 * path (paired bars). No dependencies; plain shapes and text that render the same in a browser and on GitHub.
 */
import type { PathResult } from "./report.js";

const WIDTH = 920;
const LABEL = 270;
const RIGHT = 90;
const ROW = 24;
const COLORS: Record<PathResult["via"] | "capacity", string> = {
  direct: "#8a8f98",
  minimal: "#c9a227",
  service: "#3b6fb6",
  capacity: "#7d4fb3",
};
const P50 = "#3b6fb6";
const P99 = "#e39a5b";

const escapeXml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const round = (value: number) => Math.round(value * 10) / 10;

/** A "nice" axis maximum at or above the value: 1, 2 or 5 times a power of ten. */
function niceMax(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 1.2, 1.6, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function axis(x0: number, width: number, y0: number, height: number, max: number, unit: string): string[] {
  const parts: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const x = round(x0 + (width * i) / 4);
    const value = (max * i) / 4;
    parts.push(
      `<line x1="${x}" y1="${y0}" x2="${x}" y2="${y0 + height}" stroke="#e3e5e8" stroke-width="1"/>`,
      `<text x="${x}" y="${y0 + height + 14}" text-anchor="middle" class="tick">${
        Number.isInteger(value) ? value : Number(value.toFixed(2))
      }${i === 4 ? ` ${unit}` : ""}</text>`,
    );
  }
  return parts;
}

function throughputPanel(
  paths: PathResult[],
  top: number,
  title: string,
): { parts: string[]; height: number } {
  const plotWidth = WIDTH - LABEL - RIGHT;
  const height = paths.length * ROW;
  const max = niceMax(Math.max(...paths.map((path) => path.requestsPerSecond)));
  const parts = [
    `<text x="16" y="${top - 10}" class="heading">${escapeXml(title)}</text>`,
    ...axis(LABEL, plotWidth, top, height, max, "req/s"),
  ];
  paths.forEach((path, i) => {
    const y = top + i * ROW;
    const width = round((plotWidth * path.requestsPerSecond) / max);
    parts.push(
      `<text x="${LABEL - 8}" y="${y + ROW / 2 + 4}" text-anchor="end" class="label">${escapeXml(path.label)}</text>`,
      `<rect x="${LABEL}" y="${y + 4}" width="${width}" height="${ROW - 8}" fill="${colorOf(path)}"/>`,
      `<text x="${LABEL + width + 4}" y="${y + ROW / 2 + 4}" class="value">${Math.round(path.requestsPerSecond)}</text>`,
    );
  });
  return { parts, height: height + 64 };
}

const colorOf = (path: PathResult) => (path.server === "fake" ? COLORS.capacity : COLORS[path.via]);

export function chartSvg(paths: PathResult[], title: string): string {
  const plotWidth = WIDTH - LABEL - RIGHT;
  const endToEnd = paths.filter((path) => path.server !== "fake");
  const capacity = paths.filter((path) => path.server === "fake");
  const parts: string[] = [];
  let top = 64;
  if (endToEnd.length > 0) {
    const panel = throughputPanel(endToEnd, top, "Throughput end to end (requests per second)");
    parts.push(...panel.parts);
    top += panel.height;
  }
  if (capacity.length > 0) {
    const panel = throughputPanel(
      capacity,
      top,
      "Capacity: one replica against a fake XMPP server (requests per second, own scale)",
    );
    parts.push(...panel.parts);
    top += panel.height;
  }

  const latencyTop = top;
  const latencyRow = ROW + 8;
  const latencyHeight = paths.length * latencyRow;
  const maxMs = niceMax(Math.max(...paths.map((path) => path.latency.p99)));
  parts.push(
    `<text x="16" y="${latencyTop - 10}" class="heading">Latency (ms)</text>`,
    `<rect x="120" y="${latencyTop - 20}" width="12" height="12" fill="${P50}"/>`,
    `<text x="137" y="${latencyTop - 10}" class="label">p50</text>`,
    `<rect x="170" y="${latencyTop - 20}" width="12" height="12" fill="${P99}"/>`,
    `<text x="187" y="${latencyTop - 10}" class="label">p99</text>`,
    ...axis(LABEL, plotWidth, latencyTop, latencyHeight, maxMs, "ms"),
  );
  paths.forEach((path, i) => {
    const y = latencyTop + i * latencyRow;
    const p50 = round((plotWidth * path.latency.p50) / maxMs);
    const p99 = round((plotWidth * path.latency.p99) / maxMs);
    parts.push(
      `<text x="${LABEL - 8}" y="${y + latencyRow / 2 + 4}" text-anchor="end" class="label">${escapeXml(path.label)}</text>`,
      `<rect x="${LABEL}" y="${y + 4}" width="${p50}" height="11" fill="${P50}"/>`,
      `<text x="${LABEL + p50 + 4}" y="${y + 13}" class="value">${path.latency.p50.toFixed(2)}</text>`,
      `<rect x="${LABEL}" y="${y + 16}" width="${p99}" height="11" fill="${P99}"/>`,
      `<text x="${LABEL + p99 + 4}" y="${y + 25}" class="value">${path.latency.p99.toFixed(2)}</text>`,
    );
  });

  const height = latencyTop + latencyHeight + 56;
  const legendY = height - 18;
  const legend: Array<[string, string]> = [
    ["direct to the client", COLORS.direct],
    ["minimal stateless component", COLORS.minimal],
    ["xmpp-client-proxy", COLORS.service],
    ["capacity mode (fake server)", COLORS.capacity],
  ];
  let x = 16;
  for (const [name, fill] of legend) {
    parts.push(
      `<rect x="${x}" y="${legendY - 10}" width="12" height="12" fill="${fill}"/>`,
      `<text x="${x + 16}" y="${legendY}" class="label">${escapeXml(name)}</text>`,
    );
    x += 40 + name.length * 6.5;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<title>xmpp-client-proxy benchmark ${escapeXml(title)}: requests per second and p50/p99 latency per path</title>`,
    "<style>.tick{fill:#6b7280;font-size:10px}.label{fill:#1f2937}.value{fill:#1f2937;font-size:11px}.title{font-size:15px;font-weight:bold;fill:#111827}.heading{font-size:13px;font-weight:bold;fill:#111827}</style>",
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="24" class="title">xmpp-client-proxy benchmark: ${escapeXml(title)}</text>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}
