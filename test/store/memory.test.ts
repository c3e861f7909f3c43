import { createMemoryStore } from "../../src/store/memory.js";
import { storeSuite } from "./store.suite.js";

storeSuite("in-process", async () => ({ store: createMemoryStore(), cleanup: async () => {} }));
