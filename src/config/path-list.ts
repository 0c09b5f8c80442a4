/** Splitting a list of paths as settings and IIS's environment write them. */

/** `;` everywhere because web.config values use it; `:` too, but only off Windows, where it would split C:\. */
export function splitPathList(text: string, platform: NodeJS.Platform): string[] {
  return text.split(platform === 'win32' ? /;/ : /[:;]/);
}
