/* The dashboard: sign-in, window picker, totals, map, bar charts, new-vs-active index, export;
   the comparison with the previous period, a province drill-down and the gender × age
   pyramid (issue 27). Plain JavaScript, no build step. Every number comes from the native API
   (/v1/apps/{appid}/portrait, authorised by the HttpOnly session cookie: compare=previous,
   filter=DIM=ID, by=genders,ages), so the page shows exactly what the API answers; the daily
   trend comes from /dashboard/trend. */
"use strict";
(() => {
  const DIMS = [["province", "省份"], ["city", "城市"], ["genders", "性别"], ["platforms", "平台"], ["devices", "机型"], ["ages", "年龄"]];
  const AUDIENCES = [["visit_uv_new", "新增用户"], ["visit_uv", "活跃用户"]];
  const AUTH_CODES = new Set([41001, 40001, 42001]);
  const EXPIRED = "登录已过期，请重新登录。";
  const COLORS = ["#07c160", "#3b7ddd"];
  const state = {
    apps: [], appid: null, window: "7", begin: null, end: null, body: null, trend: null,
    indexDim: "province", sortKey: "active", sortDir: -1, charts: {}, provinceNames: null, seq: 0,
    // compare: the previous period's numbers beside each one; filters: [{dim, id, name}], ANDed.
    compare: false, filters: [], cross: null, provinceBoxes: {}, mapKey: null,
  };
  const DIM_LABELS = Object.fromEntries(DIMS);
  const $ = (id) => document.getElementById(id);
  const fmt = (n) => n.toLocaleString("zh-CN");
  // The phone layout of dashboard.css (one column) and its chart options share this width.
  const narrowScreen = () => window.matchMedia("(max-width: 760px)").matches;
  // What a person can do about each errcode, in Chinese; the raw errmsg (with its rid, for
  // the server's log) goes to a small detail line and the console only.
  const ERRORS = {
    40001: "凭证无效，请重新登录。",
    40013: "AppID 无效或未注册，请检查 AppID。",
    40125: "AppSecret 不正确，请检查后重试。",
    40164: "当前 IP 不在该应用的 IP 白名单中。",
    41001: "请先登录。",
    41002: "请填写 AppID。",
    41004: "请填写 AppSecret。",
    42001: EXPIRED,
    45011: "尝试次数过多，请稍后再试。",
    40097: "请求参数无效。",
    48001: "没有权限：请从本站页面登录，并只查看已授权的应用。",
    61500: "日期格式不正确。",
    61501: "所选时间范围不可用（早于数据保留期限或超出范围）。",
    61502: "筛选后的用户太少（低于该应用的隐私阈值），无法显示；请移除筛选。",
    [-1]: "服务器内部错误，请稍后重试。",
  };
  const errorText = (e) => (e.local ? e.message : ERRORS[e.code] || `发生未知错误（错误码 ${e.code}），请稍后重试。`);
  const pct = (x) => (x * 100).toFixed(1) + "%";
  // The change against the previous period: ▲/▼ and the percentage, 新 where there was none.
  function change(value, previous) {
    if (previous === undefined || previous === null || value === null) return null;
    if (previous === 0) return value > 0 ? { text: "新", cls: "up", ratio: Infinity } : { text: "—", cls: "flat", ratio: 0 };
    const ratio = (value - previous) / previous;
    const text = (ratio > 0 ? "▲ " : ratio < 0 ? "▼ " : "") + pct(Math.abs(ratio));
    return { text, cls: ratio > 0 ? "up" : ratio < 0 ? "down" : "flat", ratio };
  }

  class ApiError extends Error {
    // local: the page's own Chinese message (no answer from the server to translate).
    constructor(code, message, local) { super(message); this.code = code; this.local = !!local; }
    get detail() { return this.local ? "" : `错误码 ${this.code}：${this.message}`; }
  }

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try { res = await fetch(path, init); } catch (e) { throw new ApiError(-1, "无法连接服务器。", true); }
    let data;
    try { data = await res.json(); } catch (e) { throw new ApiError(-1, `服务器返回了无法识别的应答（HTTP ${res.status}）。`, true); }
    if (data.errcode) throw new ApiError(data.errcode, data.errmsg);
    return data;
  }

  // -- dates: WeChat's days are Asia/Shanghai days ------------------------------------------
  function todayShanghai() {
    return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date());
  }
  function addDays(iso, n) {
    const d = new Date(iso + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }
  const compact = (iso) => iso.replaceAll("-", "");

  function currentWindow() {
    if (state.window === "custom") return { begin: $("begin").value, end: $("end").value };
    const end = addDays(todayShanghai(), -1);
    return { begin: addDays(end, 1 - Number(state.window)), end };
  }

  // -- sign-in ---------------------------------------------------------------------------
  function showSignin(message, kind, detail) {
    state.seq++;
    $("controls").hidden = true;
    $("board").hidden = true;
    $("signin").hidden = false;
    const m = $("signin-message");
    m.textContent = message || "";
    m.dataset.kind = kind || "error";
    $("signin-detail").textContent = detail || "";
  }

  function signedIn(me) {
    state.apps = me.apps;
    const select = $("app");
    select.replaceChildren(...me.apps.map((a) => new Option(a, a)));
    state.appid = me.apps.includes(state.appid) ? state.appid : me.apps[0] || null;
    if (state.appid) select.value = state.appid;
    select.disabled = me.apps.length < 2;
    $("signin").hidden = true;
    $("controls").hidden = false;
    $("board").hidden = false;
    $("signin-secret").value = "";
    $("signin-admin-key").value = "";
    if (!state.appid) return setStatus("empty", "还没有注册应用（userportrait apps add）。");
    load();
  }

  async function signin(body) {
    try {
      signedIn(await api("POST", "/dashboard/signin", body));
    } catch (e) {
      if (!e.local) console.warn("sign-in failed:", e.code, e.message);
      if (e.code === 40001 && body.code) return showSignin("登录链接无效、已使用或已过期，请重新登录。", "error", e.detail);
      showSignin(`登录失败：${e.code === 40001 && body.admin_key ? "管理员密钥不正确。" : errorText(e)}`, "error", e.detail);
    }
  }

  async function signout() {
    try { await api("POST", "/dashboard/signout"); } catch (e) { /* signed out either way */ }
    showSignin("已退出登录。", "info");
  }

  // -- loading ---------------------------------------------------------------------------
  function setStatus(kind, text) {
    const s = $("status");
    s.dataset.state = kind;
    s.textContent = text;
    s.title = "";
    $("board").dataset.state = kind;
  }

  async function load() {
    const seq = ++state.seq;
    const { begin, end } = currentWindow();
    if (!begin || !end) return setStatus("error", "请选择开始和结束日期。");
    if (begin > end) return setStatus("error", "开始日期晚于结束日期。");
    setStatus("loading", "加载中…");
    renderFilters();
    const q = `begin=${compact(begin)}&end=${compact(end)}`;
    const seg = state.filters.map((f) => `&filter=${encodeURIComponent(`${f.dim}=${f.id}`)}`).join("");
    const app = encodeURIComponent(state.appid);
    // The trend and the pyramid are a bonus: the rest of the page still shows without them.
    const bonus = (e) => {
      if (AUTH_CODES.has(e.code)) throw e;
      return null;
    };
    try {
      const [body, trend, cross] = await Promise.all([
        api("GET", `/v1/apps/${app}/portrait?${q}${seg}${state.compare ? "&compare=previous" : ""}`),
        // The trend is of all users: with a filter it would not match the page, so it hides.
        seg ? null : api("GET", `/dashboard/trend?appid=${app}&${q}`).catch(bonus),
        api("GET", `/v1/apps/${app}/portrait?${q}${seg}&by=genders,ages`).catch(bonus),
      ]);
      if (seq !== state.seq) return;
      Object.assign(state, { body, trend: trend && trend.days, cross, begin, end });
      render();
      if (total(body.visit_uv) === 0) setStatus("empty", "该时间范围内没有访问数据。");
      else setStatus("ready", "");
    } catch (e) {
      if (seq !== state.seq) return;
      if (AUTH_CODES.has(e.code)) return showSignin(e.code === 42001 ? EXPIRED : "请重新登录。");
      if (!e.local) console.warn("load failed:", e.code, e.message);
      setStatus("error", `加载失败：${errorText(e)}`);
      // The numbers on screen are not the filter's (dashboard.css hides them): only the chip stays.
      $("board").dataset.filtered = String(state.filters.length > 0);
      $("status").title = e.detail;
    }
  }

  // -- numbers ---------------------------------------------------------------------------
  // Every user has exactly one gender value in a window (未知 when none was seen).
  const total = (audience) => audience.genders.reduce((s, r) => s + r.value, 0);
  const keyOf = (r) => (r.id === undefined ? "n:" + r.name : "i:" + r.id);

  function indexRows(dim) {
    const body = state.body;
    const tn = total(body.visit_uv_new), ta = total(body.visit_uv);
    const rows = new Map();
    // previous: the row's value in the period before (compare=previous; 0 where absent).
    // A row the window has no new users of has no previous new count in the answer: unknown.
    const blank = (r) => ({ id: r.id, name: r.name, new: 0, active: 0, new_prev: undefined, active_prev: undefined });
    for (const r of body.visit_uv[dim]) rows.set(keyOf(r), { ...blank(r), active: r.value, active_prev: r.previous });
    for (const r of body.visit_uv_new[dim]) {
      const row = rows.get(keyOf(r)) || blank(r);
      Object.assign(row, { new: r.value, new_prev: r.previous });
      rows.set(keyOf(r), row);
    }
    for (const row of rows.values()) {
      row.new_share = tn ? row.new / tn : 0;
      row.active_share = ta ? row.active / ta : 0;
      row.index = row.active_share ? (row.new_share / row.active_share) * 100 : null;
      row.new_delta = change(row.new, row.new_prev);
      row.active_delta = change(row.active, row.active_prev);
      row.new_change = row.new_delta ? row.new_delta.ratio : null;
      row.active_change = row.active_delta ? row.active_delta.ratio : null;
    }
    return [...rows.values()];
  }

  // -- rendering -------------------------------------------------------------------------
  function chart(id) {
    if (!state.charts[id]) {
      const c = echarts.init($(id), null, { renderer: "canvas" });
      // No transitions: one still running when the next window's numbers arrived made
      // ECharts 6 throw now and then (a matrix of null, in an animation frame).
      c.setOption({ animation: false });
      state.charts[id] = c;
    }
    return state.charts[id];
  }

  function render() {
    const body = state.body;
    state.narrow = narrowScreen();
    const tn = total(body.visit_uv_new), ta = total(body.visit_uv);
    $("total-new").textContent = fmt(tn);
    $("total-active").textContent = fmt(ta);
    $("total-ratio").textContent = ta ? pct(tn / ta) : "–";
    const totals = body.totals || null;
    for (const [id, audience] of [["delta-new", "visit_uv_new"], ["delta-active", "visit_uv"]]) {
      const t = totals && totals[audience];
      const d = t && change(t.value, t.previous);
      const el = $(id);
      el.textContent = d ? d.text : "";
      el.className = "delta" + (d ? " " + d.cls : "");
      el.title = t ? (t.previous === null ? "上一周期：低于隐私阈值，不显示" : `上一周期：${fmt(t.previous)}`) : "";
      el.dataset.previous = t && t.previous !== null ? t.previous : "";
    }
    // "20240607-20240609" (or one day): the period the changes are against.
    const iso = (d) => `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}`;
    const prev = body.previous_ref_date ? [...new Set(body.previous_ref_date.split("-"))].map(iso) : [];
    $("previous-label").textContent = prev.length ? `对比 ${prev.join(" 至 ")}` : "";
    $("index-table").dataset.compare = String(!!totals);
    // Each date in a span that never wraps: a narrow card breaks the range at 至 only.
    const day = (d) => Object.assign(document.createElement("span"), { textContent: d, className: "date" });
    $("window-label").replaceChildren(...(state.begin === state.end ? [day(state.begin)] : [day(state.begin), " 至 ", day(state.end)]));
    renderTrend();
    renderMap();
    renderBars("city", "chart-city", true);
    renderBars("ages", "chart-ages", false, true);
    renderBars("genders", "chart-genders", false, true);
    renderBars("platforms", "chart-platforms", false);
    renderBars("devices", "chart-devices", true);
    renderPyramid();
    renderIndex();
    // A chart hidden (the empty state) while the window was resized kept its old size.
    for (const c of Object.values(state.charts)) {
      const el = c.getDom();
      if (hasSize(el) && (el.offsetWidth !== c.getWidth() || el.offsetHeight !== c.getHeight())) c.resize();
    }
  }

  function renderTrend() {
    const days = state.trend;
    $("panel-trend").hidden = !days || days.length < 2;
    if ($("panel-trend").hidden) return;
    chart("chart-trend").setOption({
      animation: false,
      color: [COLORS[1], COLORS[0]],
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 8, right: 8, top: 40, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: days.map((d) => `${d.date.slice(4, 6)}-${d.date.slice(6)}`) },
      // New users are a few percent of the active ones: on one scale their line lies flat
      // at 0, so each series has its own axis (active left, new right).
      yAxis: [
        { type: "value", name: "活跃", axisLabel: { formatter: fmt } },
        { type: "value", name: "新增", splitLine: { show: false }, axisLabel: { formatter: fmt } },
      ],
      series: [
        { name: "活跃用户", type: "line", smooth: true, yAxisIndex: 0, data: days.map((d) => d.active) },
        { name: "新增用户", type: "line", smooth: true, yAxisIndex: 1, data: days.map((d) => d.new) },
      ],
    }, true);
    if (hasSize($("chart-trend"))) chart("chart-trend").resize();
  }

  // A map laid out in a box of zero width has a singular transform, which ECharts 6 then
  // fails to invert (a TypeError in its frame loop): draw it once it has a size again.
  const hasSize = (el) => el.offsetWidth > 0 && el.offsetHeight > 0;

  // The province a filter drills into (its map zoomed, its cities in the city chart), or null.
  const drilled = () => (state.filters.find((f) => f.dim === "province") || {}).id ?? null;

  function renderMap() {
    state.mapPending = !hasSize($("chart-province"));
    if (state.mapPending) return;
    const audience = $("map-audience").value;
    const rows = state.body[audience].province;
    const names = state.provinceNames || {};
    const data = rows.filter((r) => names[r.id]).map((r) => ({ name: names[r.id], value: r.value, full: r.name, id: r.id }));
    // Zooming in or out changes the map's bounding box: a new chart, not a merged option.
    const zoom = drilled();
    if (state.mapKey !== zoom && state.charts["chart-province"]) {
      state.charts["chart-province"].dispose();
      delete state.charts["chart-province"];
    }
    state.mapKey = zoom;
    const max = Math.max(1, ...data.map((d) => d.value));
    const offMap = rows.filter((r) => !names[r.id]).reduce((s, r) => s + r.value, 0);
    $("province-off-map").textContent = `未知 / 其他：${fmt(offMap)}`;
    const c = chart("chart-province");
    // On a phone the legend lies under the map (beside it, it covered Xinjiang and Tibet).
    const narrow = narrowScreen();
    const legend = narrow
      ? { orient: "horizontal", left: "center", right: null, top: null, bottom: 0, itemWidth: 12, itemHeight: 120 }
      : { orient: "vertical", left: 8, right: null, top: null, bottom: 8, itemWidth: 20, itemHeight: 140 };
    const series = { name: audience === "visit_uv" ? "活跃用户" : "新增用户", data, top: 8, bottom: narrow ? 56 : 8 };
    const box = zoom !== null && state.provinceBoxes[zoom];
    if ((c.getOption().series || []).length) {
      // Merge new numbers into the drawn map: replacing the whole option rebuilds the geo
      // coordinate system, which ECharts 6 can trip over while a previous frame is pending.
      c.setOption({ visualMap: { max, ...legend }, series: [series] });
      return;
    }
    c.setOption({
      animation: false,
      tooltip: { trigger: "item", formatter: (p) => `${p.data ? p.data.full : p.name}：${fmt(p.value || 0)}` },
      visualMap: {
        min: 0, max, ...legend, text: ["多", "少"], calculable: true,
        formatter: (v) => fmt(Math.round(v)),
        inRange: { color: ["#e8f7ee", "#5fd394", "#07a351", "#035e2e"] },
      },
      series: [{
        ...series, type: "map", map: "china", roam: false,
        ...(box ? { boundingCoords: box } : {}),
        label: { show: !!box && !narrow }, emphasis: { label: { show: true } },
        itemStyle: { areaColor: "#f3f5f7", borderColor: "#b9c2cc" },
      }],
    });
    // A click on a province shows its portrait: every chart filtered to it (filter=province=ID).
    c.on("click", (p) => {
      if (p.data && p.data.id && drilled() === null) addFilter("province", p.data.id, names[p.data.id]);
    });
  }

  // -- filters: a chip per filter, ✕ removes it ------------------------------------------------
  function addFilter(dim, id, name) {
    state.filters = [...state.filters.filter((f) => f.dim !== dim), { dim, id, name }];
    load();
  }

  function removeFilter(dim) {
    state.filters = state.filters.filter((f) => f.dim !== dim);
    load();
  }

  function renderFilters() {
    const box = $("filters");
    box.hidden = !state.filters.length;
    box.replaceChildren(box.firstElementChild, ...state.filters.map((f) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.dataset.dim = f.dim;
      const x = Object.assign(document.createElement("button"), { type: "button", textContent: "✕", title: "移除筛选" });
      x.setAttribute("aria-label", `移除筛选 ${DIM_LABELS[f.dim]}: ${f.name}`);
      x.addEventListener("click", () => removeFilter(f.dim));
      chip.append(`${DIM_LABELS[f.dim]}: ${f.name} `, x);
      return chip;
    }));
    const p = state.filters.find((f) => f.dim === "province");
    $("city-scope").textContent = p ? `${p.name} · ` : "";
  }

  // -- the gender × age pyramid (by=genders,ages, active users) ---------------------------------
  function renderPyramid() {
    const rows = state.cross ? state.cross.visit_uv : null;
    $("panel-pyramid").hidden = !rows;
    if (!rows) return;
    // Age buckets in their order, 未知 (0) last; 男 to the left, 女 to the right.
    const rank = (id) => (id === 0 ? Infinity : id);
    const ages = [...new Map(rows.map((r) => [r.keys[1].id, r.keys[1].name]))].sort((a, b) => rank(a[0]) - rank(b[0]));
    const sums = { 1: 0, 2: 0, other: 0 };
    const cell = (g) => ages.map(([age]) => rows.filter((r) => r.keys[0].id === g && r.keys[1].id === age).reduce((s, r) => s + r.value, 0));
    for (const r of rows) sums[r.keys[0].id === 1 || r.keys[0].id === 2 ? r.keys[0].id : "other"] += r.value;
    const all = sums[1] + sums[2] + sums.other;
    const el = $("pyramid-total");
    el.textContent = `男 ${fmt(sums[1])} · 女 ${fmt(sums[2])} · 未知 ${fmt(sums.other)} · 合计 ${fmt(all)}`;
    Object.assign(el.dataset, { male: sums[1], female: sums[2], other: sums.other, total: all });
    const male = cell(1), female = cell(2);
    chart("chart-pyramid").setOption({
      animation: false,
      color: [COLORS[1], "#e8618c"],
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, valueFormatter: (v) => fmt(Math.abs(v)) },
      legend: { top: 0 },
      grid: { left: 8, right: 24, top: 32, bottom: 8, containLabel: true },
      xAxis: { type: "value", splitNumber: state.narrow ? 3 : 5, axisLabel: { formatter: (v) => fmt(Math.abs(v)), hideOverlap: true } },
      yAxis: { type: "category", data: ages.map((a) => a[1]), axisTick: { show: false } },
      series: [
        { name: "男", type: "bar", stack: "people", data: male.map((v) => -v), barMaxWidth: 18 },
        { name: "女", type: "bar", stack: "people", data: female, barMaxWidth: 18 },
      ],
    }, true);
  }

  function renderBars(dim, id, horizontal, byId) {
    const body = state.body;
    let rows = body.visit_uv[dim].slice(0, 20);
    // Ages and genders in their natural order, 未知 (id 0) last: it is not a bucket.
    const rank = (r) => (r.id === 0 ? Infinity : r.id);
    if (byId) rows = rows.slice().sort((a, b) => rank(a) - rank(b));
    const names = rows.map((r) => r.name);
    const pick = (audience) => {
      const m = new Map(body[audience][dim].map((r) => [keyOf(r), r.value]));
      return rows.map((r) => m.get(keyOf(r)) || 0);
    };
    const width = $(id).offsetWidth;
    const narrow = !horizontal && width < 480 && names.length > 4;
    const cat = { type: "category", data: names, axisLabel: { interval: 0, rotate: narrow ? 35 : 0 } };
    // Long names (device models) are cut to a third of the chart, the full name in the tooltip.
    if (horizontal) Object.assign(cat.axisLabel, { width: Math.max(72, Math.min(180, Math.round(width / 3))), overflow: "truncate" });
    // Thousands separators; fewer ticks when narrow so the labels never run into each other.
    const val = { type: "value", splitNumber: horizontal && width < 480 ? 3 : 5, axisLabel: { formatter: fmt, hideOverlap: true } };
    if (horizontal) cat.inverse = true;
    // Compared: each bar's change in the tooltip, as in the index table.
    const previous = body.totals && AUDIENCES.map(([a]) => {
      const m = new Map(body[a][dim].map((r) => [keyOf(r), r.previous]));
      return rows.map((r) => m.get(keyOf(r)));
    });
    const tooltip = { trigger: "axis", axisPointer: { type: "shadow" } };
    // Names are the clients' text (a device is any string): escaped, as ECharts' own tooltip does.
    if (previous) {
      tooltip.formatter = (ps) => [echarts.format.encodeHTML(ps[0].name), ...ps.map((p) => {
        const d = change(p.value, previous[p.seriesIndex][p.dataIndex]);
        return `${p.marker}${p.seriesName} ${fmt(p.value)}${d ? ` <span class="${d.cls}">${d.text}</span>` : ""}`;
      })].join("<br>");
    }
    chart(id).setOption({
      animation: false,
      color: COLORS,
      tooltip,
      legend: { top: 0 },
      // containLabel keeps labels inside on the left and below, not the last value label
      // at the right end of a horizontal value axis: half of it ("18,000") needs the room.
      grid: { left: 8, right: horizontal ? 32 : 16, top: 32, bottom: 8, containLabel: true },
      xAxis: horizontal ? val : cat,
      yAxis: horizontal ? cat : val,
      series: AUDIENCES.map(([a, label]) => ({ name: label, type: "bar", data: pick(a), barMaxWidth: 18 })),
    }, true);
  }

  function renderIndex() {
    const tabs = $("index-dims");
    if (!tabs.children.length) {
      for (const [dim, label] of DIMS) {
        const b = document.createElement("button");
        b.type = "button";
        b.role = "tab";
        b.dataset.dim = dim;
        b.textContent = label;
        b.addEventListener("click", () => { state.indexDim = dim; renderIndex(); });
        tabs.append(b);
      }
    }
    for (const b of tabs.children) b.setAttribute("aria-selected", String(b.dataset.dim === state.indexDim));
    const rows = indexRows(state.indexDim);
    const { sortKey: k, sortDir: dir } = state;
    rows.sort((a, b) => {
      if (k === "name") return dir * a.name.localeCompare(b.name, "zh-CN");
      if (a[k] === null || b[k] === null) return (a[k] === null) - (b[k] === null);
      return dir * (a[k] - b[k]) || b.active - a.active;
    });
    for (const th of document.querySelectorAll("#index-table th")) {
      th.setAttribute("aria-sort", th.dataset.sort === k ? (dir > 0 ? "ascending" : "descending") : "none");
    }
    $("index-table").tBodies[0].replaceChildren(...rows.map((r) => {
      const tr = document.createElement("tr");
      const cells = [
        [r.name, ""], [fmt(r.new), "num"], [fmt(r.active), "num"], [pct(r.new_share), "num"],
        [pct(r.active_share), "num"], [r.index === null ? "—" : Math.round(r.index), "num"],
        [r.new_delta ? r.new_delta.text : "", "num change " + (r.new_delta ? r.new_delta.cls : "")],
        [r.active_delta ? r.active_delta.text : "", "num change " + (r.active_delta ? r.active_delta.cls : "")],
      ];
      for (const [text, cls] of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        td.className = cls;
        tr.append(td);
      }
      if (r.index !== null) tr.cells[5].classList.add(r.index >= 120 ? "high" : r.index <= 80 ? "low" : "mid");
      tr.dataset.new = r.new;
      tr.dataset.active = r.active;
      if (r.active_prev !== undefined) tr.dataset.activePrevious = r.active_prev;
      if (r.new_prev !== undefined) tr.dataset.newPrevious = r.new_prev;
      return tr;
    }));
  }

  // -- export ----------------------------------------------------------------------------
  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
  const fileName = (ext) => `portrait-${state.appid}-${compact(state.begin)}-${compact(state.end)}.${ext}`;
  // A text a spreadsheet would run as a formula gets a leading ' (OWASP "CSV Injection"):
  // the rule of portrait/export.py csv_cell, which tests/test_dashboard_browser.py holds it to.
  const csvCell = (v) => {
    let s = String(v);
    if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = "'" + s;
    return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };

  function exportCsv() {
    if (!state.body) return;
    const lines = [["appid", "begin", "end", "dimension", "id", "name", "new", "active", "index"].join(",")];
    for (const [dim] of DIMS) {
      for (const r of indexRows(dim)) {
        lines.push([state.appid, compact(state.begin), compact(state.end), dim, r.id === undefined ? "" : r.id,
          r.name, r.new, r.active, r.index === null ? "" : r.index.toFixed(1)].map(csvCell).join(","));
      }
    }
    download(fileName("csv"), "\ufeff" + lines.join("\r\n") + "\r\n", "text/csv;charset=utf-8");
  }

  function exportJson() {
    if (!state.body) return;
    const out = {
      appid: state.appid, begin: compact(state.begin), end: compact(state.end),
      // The segment on screen, as the API's filter parameters ("province=44").
      filters: state.filters.map((f) => `${f.dim}=${f.id}`),
      totals: { new: total(state.body.visit_uv_new), active: total(state.body.visit_uv) },
      portrait: state.body, trend: state.trend,
    };
    download(fileName("json"), JSON.stringify(out, null, 2), "application/json");
  }

  // -- wiring ----------------------------------------------------------------------------
  function pickWindow(w) {
    state.window = w;
    for (const b of document.querySelectorAll("[data-window]")) b.setAttribute("aria-pressed", String(b.dataset.window === w));
    $("range").hidden = w !== "custom";
    if (w === "custom") {
      const end = addDays(todayShanghai(), -1);
      if (!$("end").value) $("end").value = end;
      if (!$("begin").value) $("begin").value = state.begin || addDays(end, -6);
      return;
    }
    load();
  }

  function bind() {
    for (const b of document.querySelectorAll("[data-window]")) b.addEventListener("click", () => pickWindow(b.dataset.window));
    $("range").addEventListener("submit", (e) => { e.preventDefault(); load(); });
    $("app").addEventListener("change", () => { state.appid = $("app").value; load(); });
    $("map-audience").addEventListener("change", () => state.body && renderMap());
    $("compare").addEventListener("change", () => { state.compare = $("compare").checked; load(); });
    $("export-csv").addEventListener("click", exportCsv);
    $("export-json").addEventListener("click", exportJson);
    $("signout").addEventListener("click", signout);
    for (const th of document.querySelectorAll("#index-table th")) {
      th.addEventListener("click", () => {
        state.sortDir = state.sortKey === th.dataset.sort ? -state.sortDir : (th.dataset.sort === "name" ? 1 : -1);
        state.sortKey = th.dataset.sort;
        if (state.body) renderIndex();
      });
    }
    for (const tab of document.querySelectorAll("[data-signin]")) {
      tab.addEventListener("click", () => {
        for (const t of document.querySelectorAll("[data-signin]")) t.setAttribute("aria-selected", String(t === tab));
        $("signin-app").hidden = tab.dataset.signin !== "app";
        $("signin-admin").hidden = tab.dataset.signin !== "admin";
      });
    }
    $("signin-app").addEventListener("submit", (e) => {
      e.preventDefault();
      signin({ appid: $("signin-appid").value.trim(), secret: $("signin-secret").value });
    });
    $("signin-admin").addEventListener("submit", (e) => {
      e.preventDefault();
      signin({ admin_key: $("signin-admin-key").value });
    });
    window.addEventListener("resize", () => {
      for (const c of Object.values(state.charts)) if (hasSize(c.getDom())) c.resize();
      // Crossing the phone width changes the charts' options, not only their size.
      if (state.body && narrowScreen() !== state.narrow) return render();
      if (state.mapPending && state.body) renderMap();
    });
    for (const b of document.querySelectorAll("[data-window]")) b.setAttribute("aria-pressed", String(b.dataset.window === state.window));
  }

  async function loadMap() {
    const res = await fetch("/assets/vendor/china-map/china.json");
    const geo = await res.json();
    // Features carry the GB/T 2260 code ("440000"); the API's province id is its first two digits.
    // The boxes first: ECharts decodes the rings in place once it draws the map.
    state.provinceBoxes = Object.fromEntries(geo.features.map((f) => [Math.floor(Number(f.properties.id) / 10000), boundingBox(f, geo.UTF8Scale || 1024)]));
    state.provinceNames = Object.fromEntries(geo.features.map((f) => [Math.floor(Number(f.properties.id) / 10000), f.properties.name]));
    echarts.registerMap("china", geo);
  }

  // [[west, north], [east, south]] of a feature of the map file, with a margin: the map zooms
  // to it on a drill-down. The file's rings are ECharts' compressed form (each point two
  // characters, zigzag deltas from encodeOffsets; ECharts' parseGeoJson decodes them so).
  function boundingBox(feature, scale) {
    const { coordinates: polygons, encodeOffsets: offsets, type } = feature.geometry;
    let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
    const rings = type === "Polygon" ? [[polygons, offsets]] : polygons.map((p, i) => [p, offsets[i]]);
    for (const [poly, offs] of rings) {
      poly.forEach((ring, i) => {
        let [x, y] = offs[i];
        for (let k = 0; k < ring.length; k += 2) {
          let dx = ring.charCodeAt(k) - 64, dy = ring.charCodeAt(k + 1) - 64;
          x += (dx >> 1) ^ -(dx & 1);
          y += (dy >> 1) ^ -(dy & 1);
          [w, e, s, n] = [Math.min(w, x / scale), Math.max(e, x / scale), Math.min(s, y / scale), Math.max(n, y / scale)];
        }
      });
    }
    const m = Math.max(e - w, n - s) * 0.08;
    return [[w - m, n + m], [e + m, s - m]];
  }

  function linkSignin() {
    const code = location.hash.match(/code=([A-Za-z0-9_-]+)/);
    if (!code) return false;
    // The code came in the fragment (never sent to a server or its logs); drop it now.
    history.replaceState(null, "", location.pathname + location.search);
    signin({ code: code[1] });
    return true;
  }

  async function boot() {
    bind();
    await loadMap();
    // A link opened in a tab already showing the dashboard changes only the fragment.
    window.addEventListener("hashchange", linkSignin);
    if (linkSignin()) return;
    try {
      signedIn(await api("GET", "/dashboard/me"));
    } catch (e) {
      showSignin(e.code === 42001 ? EXPIRED : AUTH_CODES.has(e.code) ? "" : errorText(e), "error", e.detail);
    }
  }

  boot();
})();
