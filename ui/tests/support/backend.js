// Test-only stand-in for the Rust side of docs/ipc.md, installed in the page with the real
// @tauri-apps/api mocks (mockIPC / mockWindows / shouldMockEvents). It keeps conversations in
// memory, streams answers over the real Channel callback path, and records every call in
// window.__calls so tests can assert what the UI asked for.
(() => {
  function install(cfg) {
    const M = window.__TAURI_MOCKS__;
    M.mockWindows('main');
    const config = {
      modelState: 'ready',
      failAll: false,
      fail: {}, // command -> error message
      tokenDelayMs: 25,
      answer: 'Hello! This is a **streamed** answer. It has two sentences.',
      conversations: [],
      catalog: null,
      ...cfg,
    };
    const calls = [];
    window.__calls = calls;
    window.__backend = { config };
    let stopRequested = false;
    let seq = 1;
    const id = (p) => `${p}-${seq++}`;
    const now = () => 1_763_700_000_000 + seq * 1000;

    const model = {
      id: 'imp-v1-3b',
      name: 'Imp v1 3B',
      family: 'phi2',
      path: '/models/imp-v1-3b',
      imageSize: 384,
      visualTokens: 729,
      contextLength: 2048,
      quantization: 'f16',
      imageAspect: 'pad',
    };
    let status =
      config.modelState === 'ready'
        ? { state: 'ready', model, error: null }
        : config.modelState === 'loading'
          ? { state: 'loading', model, error: null }
          : config.modelState === 'error'
          ? { state: 'error', model: null, error: 'The model folder /models/broken has no config.json. Choose the folder that holds config.json and the .safetensors files.' }
          : { state: 'none', model: null, error: null };

    if (config.modelState === 'loading') setTimeout(() => (status = { state: 'ready', model, error: null }), config.loadingMs ?? 1500);

    let settings = {
      theme: config.theme ?? 'light',
      threads: null,
      systemPrompt: null,
      defaults: { temperature: 0.2, topP: 0.9, topK: null, maxTokens: 512, repetitionPenalty: 1.0, seed: null },
      dataDir: '/home/user/.local/share/app.impchat',
      lastModelPath: null,
      idleUnloadMinutes: null,
    };

    // Conversations: a tree of messages per conversation plus the id of the active leaf.
    const convs = new Map();
    function addConversation(c) {
      const conv = {
        id: c.id ?? id('conv'),
        title: c.title ?? 'Untitled',
        createdAt: c.createdAt ?? now(),
        updatedAt: c.updatedAt ?? now(),
        pinned: c.pinned ?? false,
        modelId: null,
        deleted: false,
        systemPrompt: null,
        settings: null,
        nodes: new Map(),
        leaf: null,
      };
      let parent = null;
      for (const m of c.messages ?? []) {
        const msg = makeMessage(m.role, m.content, parent, m.images ?? []);
        if (m.stats) msg.stats = m.stats;
        if (m.status) msg.status = m.status;
        conv.nodes.set(msg.id, msg);
        parent = msg.id;
      }
      conv.leaf = parent;
      convs.set(conv.id, conv);
      return conv;
    }
    function makeMessage(role, content, parentId, images = []) {
      return { id: id('msg'), parentId, role, content, status: 'complete', createdAt: now(), images, stats: null, provenance: null, error: null };
    }
    function summary(c) {
      const { id: cid, title, createdAt, updatedAt, pinned, modelId, deleted } = c;
      return { id: cid, title, createdAt, updatedAt, pinned, modelId, deleted };
    }
    function branch(c) {
      const out = [];
      let cur = c.leaf;
      while (cur) {
        const m = c.nodes.get(cur);
        out.unshift(m);
        cur = m.parentId;
      }
      return out.map((m) => ({
        ...m,
        // As the store does: every version under the same parent, itself included, oldest first.
        siblingIds: [...c.nodes.values()].filter((x) => x.parentId === m.parentId).map((x) => x.id),
      }));
    }
    function full(c) {
      return { ...summary(c), systemPrompt: c.systemPrompt, settings: c.settings, messages: branch(c) };
    }
    function conv(cid) {
      const c = convs.get(cid);
      if (!c) throw { kind: 'not_found', message: `Conversation ${cid} does not exist. It may have been deleted; pick another one.` };
      return c;
    }
    for (const c of config.conversations) addConversation(c);

    const staged = new Map();
    async function pngBytes(w, h, hue) {
      const canvas = new OffscreenCanvas(w, h);
      const g = canvas.getContext('2d');
      const grad = g.createLinearGradient(0, 0, w, h);
      grad.addColorStop(0, `hsl(${hue} 70% 60%)`);
      grad.addColorStop(1, `hsl(${(hue + 80) % 360} 70% 45%)`);
      g.fillStyle = grad;
      g.fillRect(0, 0, w, h);
      g.fillStyle = 'rgba(255,255,255,0.85)';
      g.beginPath();
      g.arc(w * 0.35, h * 0.4, Math.min(w, h) * 0.18, 0, Math.PI * 2);
      g.fill();
      const blob = await canvas.convertToBlob({ type: 'image/png' });
      return new Uint8Array(await blob.arrayBuffer());
    }
    async function dataUrl(bytes) {
      const blob = new Blob([bytes], { type: 'image/png' });
      return await new Promise((resolve) => {
        const r = new window.FileReader();
        r.onload = () => resolve(r.result);
        r.readAsDataURL(blob);
      });
    }
    async function stage(name, size) {
      // Worded as src-tauri's staging does: "<name>: <impchat-input ImageError>".
      if (/\.pdf$/i.test(name)) throw { kind: 'invalid', message: `${name}: This is a PDF document, not an image. Take a screenshot of the page or export it as PNG, and try again.` };
      if (size === 0) throw { kind: 'invalid', message: `${name}: The file is empty (0 bytes). Pick the image again; if it was downloading, wait for it to finish.` };
      if (size > 64 * 1024 * 1024)
        throw { kind: 'invalid', message: `${name}: The file is ${Math.ceil(size / 1048576)} MiB; ImpChat accepts images up to 64 MiB. Shrink or re-compress it and try again.` };
      const token = id('tok');
      const sha256 = `sha-${token}`;
      const thumb = await pngBytes(64, 48, 200);
      const img = { token, sha256, mime: 'image/png', width: 640, height: 480, bytes: size, thumbnailDataUrl: await dataUrl(thumb) };
      staged.set(token, img);
      return img;
    }

    function send(channel, index, message) {
      window.__TAURI_INTERNALS__.runCallback(channel.id, { index, message });
    }
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

    // The model catalog with what the app adds per device: formats, install state, kept bytes.
    const quantizations = (ramBytes) => [
      { quant: 'q4_k_m', recommended: true, fileBytes: 2_600_000_000, ramBytes: Math.round(ramBytes * 0.45), contextTokens: 2048, fits: 'yes' },
      { quant: 'q8_0', recommended: false, fileBytes: 3_500_000_000, ramBytes: Math.round(ramBytes * 0.6), contextTokens: 2048, fits: 'yes' },
      { quant: 'f16', recommended: false, fileBytes: 6_400_000_000, ramBytes, contextTokens: 2048, fits: 'tight' },
    ];
    const withDownloads = (c) => ({
      revision: 'main', quantizations: quantizations(c.ramBytes), defaultQuant: 'q4_k_m', suggested: false,
      installed: null, partialBytes: 0, downloading: false, ...c,
    });
    const catalog = (
      config.catalog ?? [
        { id: 'imp-v1-3b', name: 'Imp v1 3B', repo: 'MILVLG/imp-v1-3b', family: 'phi2', params: '3B', imageSize: 384, visualTokens: 729, license: 'Apache-2.0', goodAt: 'General image questions in English', downloadBytes: 6_400_000_000, ramBytes: 7_200_000_000, fits: 'yes' },
        { id: 'imp-v1.5-2b-qwen1.5', name: 'Imp v1.5 2B (Qwen1.5)', repo: 'MILVLG/Imp-v1.5-2B-Qwen1.5', family: 'qwen2', params: '2B', imageSize: 384, visualTokens: 729, license: 'Apache-2.0', goodAt: 'Multilingual answers, smallest memory use', downloadBytes: 4_200_000_000, ramBytes: 5_100_000_000, fits: 'yes' },
        { id: 'imp-v1.5-4b-phi3', name: 'Imp v1.5 4B (Phi-3)', repo: 'MILVLG/Imp-v1.5-4B-Phi3', family: 'phi3', params: '4B', imageSize: 384, visualTokens: 729, license: 'Apache-2.0', goodAt: 'Best answers, needs the most memory', downloadBytes: 8_300_000_000, ramBytes: 9_800_000_000, fits: 'tight' },
      ]
    ).map(withDownloads);
    let downloadingId = null;
    let cancelRequested = false;

    // `continued`: an existing answer that the new text is appended to, as continue_message does.
    async function generate(c, parentId, onEvent, userMessageId, images, continued = null) {
      if (status.state !== 'ready') throw { kind: 'no_model', message: 'No model is loaded. Load a model first, then send again.' };
      stopRequested = false;
      const answer = continued ?? makeMessage('assistant', '', parentId);
      answer.status = 'streaming';
      answer.error = null;
      c.nodes.set(answer.id, answer);
      c.leaf = answer.id;
      let i = 0;
      send(onEvent, i++, { event: 'started', data: { userMessageId, assistantMessageId: answer.id } });
      images.forEach((_, k) => send(onEvent, i++, { event: 'image_encoded', data: { index: k, ms: 412, cached: false } }));
      send(onEvent, i++, { event: 'prompt_processed', data: { tokens: 812, ms: 950 } });
      const text = c.nextAnswer ?? config.answer;
      const tokens = text.match(/\s*\S+|\s+/g) ?? [];
      let produced = 0;
      for (const t of tokens) {
        if (stopRequested) break;
        await sleep(config.tokenDelayMs);
        if (stopRequested) break;
        answer.content += t;
        produced++;
        send(onEvent, i++, { event: 'token', data: { text: t } });
      }
      if (config.fail.midStream) {
        answer.status = 'error';
        answer.error = config.fail.midStream;
        send(onEvent, i++, { event: 'error', data: { message: config.fail.midStream } });
        return 'error';
      }
      const stopped = stopRequested;
      answer.status = stopped ? 'stopped' : 'complete';
      answer.stats = {
        images: images.length,
        imageEncodeMs: images.length ? 412 : 0,
        promptTokens: 812,
        promptTokensComputed: 812,
        promptMs: 950,
        timeToFirstTokenMs: 1234,
        generatedTokens: produced,
        decodeMs: produced * 110,
        decodeTokensPerS: 9.1,
        stopReason: stopped ? 'cancelled' : 'end_of_turn',
      };
      c.updatedAt = now();
      send(onEvent, i++, { event: 'done', data: { stats: answer.stats, status: answer.status } });
      return answer.status;
    }

    const handlers = {
      list_conversations: ({ includeDeleted }) =>
        [...convs.values()]
          .filter((c) => includeDeleted || !c.deleted)
          .sort((a, b) => Number(b.pinned) - Number(a.pinned) || b.updatedAt - a.updatedAt)
          .map(summary),
      create_conversation: ({ title }) => {
        const c = addConversation({ title: title ?? 'New chat' });
        c.autoTitle = title === undefined;
        return summary(c);
      },
      get_conversation: async ({ id: cid }) => {
        if (cid === config.slowConversation) await sleep(400);
        return full(conv(cid));
      },
      rename_conversation: ({ id: cid, title }) => {
        conv(cid).title = title;
        return null;
      },
      pin_conversation: ({ id: cid, pinned }) => {
        conv(cid).pinned = pinned;
        return null;
      },
      delete_conversation: ({ id: cid }) => {
        conv(cid).deleted = true;
        return null;
      },
      restore_conversation: ({ id: cid }) => {
        conv(cid).deleted = false;
        return null;
      },
      purge_conversation: ({ id: cid }) => {
        convs.delete(cid);
        return null;
      },
      search: ({ query }) => {
        const q = query.toLowerCase();
        const hits = [];
        for (const c of convs.values()) {
          if (c.deleted) continue;
          for (const m of c.nodes.values()) {
            const at = m.content.toLowerCase().indexOf(q);
            if (at >= 0) {
              const s = m.content;
              hits.push({ conversationId: c.id, messageId: m.id, title: c.title, snippet: `${s.slice(0, at)}\u0001${s.slice(at, at + q.length)}\u0002${s.slice(at + q.length)}`, rank: 1 });
            }
          }
        }
        return hits;
      },
      set_chat_settings: ({ id: cid, systemPrompt, settings: s }) => {
        const c = conv(cid);
        c.systemPrompt = systemPrompt;
        c.settings = s;
        return null;
      },
      stage_image_path: ({ path }) => stage(path.split('/').pop(), /huge/.test(path) ? 200 * 1024 * 1024 : /empty/.test(path) ? 0 : 120_000),
      stage_image_bytes: (bytes) => stage('pasted.png', bytes.byteLength),
      image_preview: async ({ token }) => {
        if (!staged.has(token)) throw { kind: 'not_found', message: 'That image is no longer staged. Attach it again.' };
        return { pngDataUrl: await dataUrl(await pngBytes(384, 384, 30)), size: 384, visualTokens: 729, aspect: 'pad' };
      },
      get_image: async ({ thumbnail }) => (await pngBytes(thumbnail ? 160 : 640, thumbnail ? 120 : 480, 200)).buffer,
      send_message: async ({ conversationId, text, imageTokens, onEvent }) => {
        const c = conv(conversationId);
        const images = imageTokens.map((t) => {
          const s = staged.get(t);
          if (!s) throw { kind: 'not_found', message: 'An attached image expired. Attach it again.' };
          return { sha256: s.sha256, mime: s.mime, width: s.width, height: s.height, bytes: s.bytes };
        });
        if (status.state !== 'ready') throw { kind: 'no_model', message: 'No model is loaded. Load a model first, then send again.' };
        const user = makeMessage('user', text, c.leaf, images);
        c.nodes.set(user.id, user);
        if (c.autoTitle && text.trim()) {
          c.title = text.trim().split('\n')[0].slice(0, 60);
          c.autoTitle = false;
        }
        c.leaf = user.id;
        return generate(c, user.id, onEvent, user.id, images);
      },
      regenerate: async ({ conversationId, messageId, onEvent }) => {
        const c = conv(conversationId);
        const old = c.nodes.get(messageId);
        c.nextAnswer = 'A regenerated answer.';
        const r = await generate(c, old.parentId, onEvent, old.parentId, []);
        c.nextAnswer = undefined;
        return r;
      },
      edit_and_resend: async ({ conversationId, messageId, text, onEvent }) => {
        const c = conv(conversationId);
        const old = c.nodes.get(messageId);
        const user = makeMessage('user', text, old.parentId, old.images);
        c.nodes.set(user.id, user);
        return generate(c, user.id, onEvent, user.id, []);
      },
      continue_message: async ({ conversationId, messageId, onEvent }) => {
        const c = conv(conversationId);
        const answer = c.nodes.get(messageId);
        if (answer?.role !== 'assistant' || c.leaf !== messageId)
          throw { kind: 'invalid_input', message: 'only the latest answer of the conversation can be continued; ask a new question instead' };
        return generate(c, answer.parentId, onEvent, answer.parentId, [], answer);
      },
      switch_branch: ({ conversationId, messageId }) => {
        const c = conv(conversationId);
        let leaf = messageId;
        for (;;) {
          const child = [...c.nodes.values()].filter((m) => m.parentId === leaf).pop();
          if (!child) break;
          leaf = child.id;
        }
        c.leaf = leaf;
        return full(c);
      },
      stop_generation: () => {
        stopRequested = true;
        return null;
      },
      model_status: () => status,
      load_model: async ({ path }) => {
        await sleep(150);
        if (config.fail.load_model) {
          status = { state: 'error', model: null, error: config.fail.load_model };
          throw { kind: 'load_failed', message: config.fail.load_model };
        }
        status = { state: 'ready', model: { ...model, path }, error: null };
        return status.model;
      },
      unload_model: () => {
        status = { state: 'none', model: null, error: null };
        return null;
      },
      pick_model_path: ({ kind }) => (kind === 'folder' ? '/models/imp-v1-3b' : '/models/imp-v1-3b-q4.gguf'),
      model_catalog: () => catalog.map((c) => ({ ...c, downloading: c.id === downloadingId })),
      // Downloads: config.download = { steps, stepMs, errors: [AppError, ...] (thrown in turn, then success) }.
      download_model: async ({ id: modelId, quant, onEvent }) => {
        const entry = catalog.find((c) => c.id === modelId);
        if (!entry) throw { kind: 'not_found', message: `"${modelId}" is not in the model catalog; choose one of the listed models` };
        if (downloadingId !== null) throw { kind: 'invalid_input', message: `${downloadingId} is downloading; wait for it to finish or cancel it first` };
        const d = config.download ?? {};
        const steps = d.steps ?? 4;
        const total = entry.downloadBytes;
        downloadingId = modelId;
        cancelRequested = false;
        let i = 0;
        try {
          send(onEvent, i++, { phase: 'resolving', bytesDone: 0, bytesTotal: 0, bytesPerSecond: 0, etaSeconds: null, partsDone: 0, partsTotal: 3 });
          for (let k = 1; k <= steps; k++) {
            await sleep(d.stepMs ?? 40);
            if (cancelRequested) {
              entry.partialBytes = Math.round((total * (k - 1)) / (steps + 1));
              throw { kind: 'cancelled', message: `the download of ${entry.name} was cancelled; the part downloaded so far is kept and Retry continues from there` };
            }
            const done = Math.round((total * k) / (steps + 1));
            send(onEvent, i++, { phase: 'downloading', bytesDone: done, bytesTotal: total, bytesPerSecond: 12_500_000, etaSeconds: (total - done) / 12_500_000, partsDone: 0, partsTotal: 3 });
          }
          const failure = (d.errors ?? []).shift();
          if (failure) throw failure;
          send(onEvent, i++, { phase: 'verifying', bytesDone: total, bytesTotal: total, bytesPerSecond: 0, etaSeconds: null, partsDone: 2, partsTotal: 3 });
          if (quant !== 'f16') send(onEvent, i++, { phase: 'converting', bytesDone: total, bytesTotal: total, bytesPerSecond: 0, etaSeconds: null, partsDone: 120, partsTotal: 240 });
          send(onEvent, i++, { phase: 'done', bytesDone: total, bytesTotal: total, bytesPerSecond: 0, etaSeconds: null, partsDone: 3, partsTotal: 3 });
          const folder = `/data/models/${modelId}`;
          entry.installed = {
            id: modelId, catalogId: modelId, path: folder,
            loadPath: quant === 'f16' ? folder : `${folder}/${modelId}-${quant.toUpperCase()}.gguf`,
            sizeOnDisk: total, repo: entry.repo, revision: 'main',
            commit: '0123456789abcdef0123456789abcdef01234567', installedAt: now(),
          };
          entry.partialBytes = 0;
          return entry.installed;
        } finally {
          downloadingId = null;
        }
      },
      cancel_download: ({ id: modelId }) => {
        if (downloadingId !== modelId) return false;
        cancelRequested = true;
        return true;
      },
      installed_models: () => catalog.filter((c) => c.installed !== null).map((c) => c.installed),
      get_settings: () => settings,
      set_settings: ({ settings: s }) => {
        settings = s;
        return null;
      },
      open_data_dir: () => null,
      // The native save dialog: `savePath` is what the user picks (null: cancelled).
      export_bytes: ({ id: cid, format }) => {
        const c = cid === null ? null : conv(cid);
        const text = format === 'zip' ? 'PK\u0003\u0004 archive' : `# ${c?.title ?? 'ImpChat conversations'}\n`;
        return new TextEncoder().encode(text).buffer;
      },
      export_file_name: ({ id: cid, format }) => `${cid === null ? 'ImpChat conversations' : conv(cid).title}.${format === 'zip' ? 'zip' : 'md'}`,
      save_export: ({ id: cid, format }) => {
        if (cid !== null) conv(cid);
        const picked = config.savePath === undefined ? `/home/user/Documents/export.${format === 'zip' ? 'zip' : 'md'}` : config.savePath;
        return picked;
      },
      // Like the app state: the start-up notices are handed out once.
      take_store_notices: () => {
        const notices = config.storeNotices ?? [];
        config.storeNotices = [];
        return notices;
      },
    };

    M.mockIPC(
      async (cmd, args) => {
        calls.push({ cmd, args: cmd === 'stage_image_bytes' ? { byteLength: args.byteLength } : args });
        if (config.failAll) throw { kind: 'internal', message: `The backend failed (${cmd}). Restart ImpChat; if it keeps happening, report it.` };
        if (config.fail[cmd]) throw { kind: 'failed', message: config.fail[cmd] };
        const h = handlers[cmd];
        if (!h) throw { kind: 'unknown', message: `unmocked command ${cmd}` };
        return await h(args ?? {});
      },
      { shouldMockEvents: true },
    );
  }

  window.__installMockBackend = install;
})();
