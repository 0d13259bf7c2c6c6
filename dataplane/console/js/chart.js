// A small bar chart drawn as SVG, with a text alternative for screen readers.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/**
 * Bars of `values` (numbers) labelled by `labels`, `label` describing the whole. Each bar has
 * a tooltip with its label and value.
 */
export function bars(values, labels, label) {
  const width = 600;
  const height = 120;
  const max = Math.max(1, ...values);
  const step = width / values.length;
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height + 2}`,
    class: "chart",
    role: "img",
    "aria-label": `${label}: ${values.reduce((a, b) => a + b, 0)} in all, at most ${Math.max(0, ...values)} in one bar`,
    preserveAspectRatio: "none",
  });
  values.forEach((v, i) => {
    const bh = (v / max) * height;
    const rect = svg("rect", {
      x: i * step + 1,
      y: height - bh,
      width: Math.max(1, step - 2),
      height: Math.max(bh, v > 0 ? 1 : 0),
      class: "bar",
    });
    const title = svg("title", {});
    title.textContent = `${labels[i]}: ${v}`;
    rect.appendChild(title);
    root.appendChild(rect);
  });
  root.appendChild(svg("line", { x1: 0, y1: height, x2: width, y2: height, class: "axis" }));
  // The first and last labels as text under the chart, which the SVG's stretching would distort.
  const ticks = document.createElement("div");
  ticks.className = "ticks";
  for (const i of [0, values.length - 1]) {
    const t = document.createElement("span");
    t.textContent = labels[i];
    ticks.appendChild(t);
  }
  const box = document.createElement("div");
  box.append(root, ticks);
  return box;
}
