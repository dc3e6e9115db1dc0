import { useEffect, useState } from 'preact/hooks';

// A coarse primary pointer means a finger: a phone or tablet, where files come from the picker or
// the camera, never from a drag-and-drop, and nothing can be hovered.
const TOUCH_QUERY = '(pointer: coarse)';

/** True while the primary pointer is a finger; follows changes (e.g. a tablet docked to a keyboard). */
export function useTouchScreen(): boolean {
  const [touch, setTouch] = useState(() => window.matchMedia(TOUCH_QUERY).matches);
  useEffect(() => {
    const query = window.matchMedia(TOUCH_QUERY);
    const update = () => setTouch(query.matches);
    update();
    query.addEventListener('change', update);
    return () => query.removeEventListener('change', update);
  }, []);
  return touch;
}
