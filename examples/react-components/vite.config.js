import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  // optel is linked from ../../sdk/js, which has its own React for its tests: use the app's one.
  resolve: { dedupe: ['react', 'react-dom'] },
  base: './',
  build: { outDir: 'dist', emptyOutDir: true },
});
